//! CSV out: a header, then one record per row. The nested columns (`top_k`, `rules_fired`,
//! `models`) are JSON in their cell; a null is an empty cell; scores are the shortest decimal
//! that reads back as the same `f32`.

use std::io;

use super::jsonl::JsonRow;
use super::{Mark, Sink, Writer};
use crate::batch::chunk::OutRow;
use crate::ensemble::Ensemble;

pub struct CsvWriter {
    out: csv::Writer<Sink>,
    explain: bool,
}

const HEADER: [&str; 12] = [
    "id",
    "row",
    "label",
    "score",
    "top_k",
    "agreement",
    "abstained",
    "rules_fired",
    "error",
    "ensemble",
    "version",
    "digest",
];

impl CsvWriter {
    /// A new output gets its header; a resumed one (already holding bytes) has it.
    pub fn new(sink: Sink, explain: bool) -> io::Result<Self> {
        let fresh = sink.bytes == 0;
        let mut out = csv::WriterBuilder::new().from_writer(sink);
        if fresh {
            let mut header: Vec<&str> = HEADER.to_vec();
            if explain {
                header.push("models");
            }
            out.write_record(&header).map_err(io::Error::other)?;
        }
        Ok(CsvWriter { out, explain })
    }
}

fn json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).expect("answers serialise")
}

impl Writer for CsvWriter {
    fn write(&mut self, rows: &[&OutRow], ensemble: &Ensemble) -> io::Result<()> {
        for row in rows {
            let r = JsonRow::new(row, ensemble, self.explain);
            let mut record = vec![
                row.id.text().unwrap_or_default(),
                r.row.to_string(),
                r.label.unwrap_or_default().to_owned(),
                r.score.map(|s| s.to_string()).unwrap_or_default(),
                json(r.top_k),
                r.agreement.map(|a| a.to_string()).unwrap_or_default(),
                r.abstained.unwrap_or_default().to_owned(),
                json(r.rules_fired),
                r.error.unwrap_or_default().to_owned(),
                r.ensemble.to_owned(),
                r.version.to_owned(),
                r.digest.to_owned(),
            ];
            if let Some(models) = r.models {
                record.push(json(models));
            }
            self.out.write_record(&record).map_err(io::Error::other)?;
        }
        Ok(())
    }

    fn mark(&mut self) -> io::Result<Mark> {
        // The CSV writer's own buffer into the sink, so that the sink counts every record.
        self.out.flush()?;
        Ok(Mark {
            bytes: self.out.get_ref().bytes(),
            ..Mark::default()
        })
    }

    fn sync(&mut self) -> io::Result<()> {
        // Flushes the CSV writer's buffer and then the sink's.
        self.out.flush()?;
        self.out.get_ref().sync_flushed()
    }

    fn finish(mut self: Box<Self>) -> io::Result<()> {
        self.sync()
    }
}
