//! `lastmile check`: a good manifest summarised; every broken one refused with one line that
//! names its place.

use super::*;

#[test]
fn check_summarises_a_good_manifest() {
    let (_dir, path) = manifest(&two_fasttext_models());
    let out = lastmile(&["check", &path], "");
    assert_succeeded(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_mentions(
        &stdout,
        &[
            "ok: t version 1",
            "2 models (2 fasttext, 0 onnx)",
            "10 labels",
        ],
    );
}

#[test]
fn missing_model_file_is_named() {
    let text = two_fasttext_models().replace(&fasttext("ova.bin"), "nowhere/ova.bin");
    let line = refused(&text);
    assert_mentions(
        &line,
        &[
            ":15:",
            "model \"b\"",
            "field `path`",
            "nowhere/ova.bin",
            "does not exist",
        ],
    );
}

#[test]
fn unknown_kind_is_named() {
    let text = two_fasttext_models().replacen("kind = \"fasttext\"", "kind = \"tensorflow\"", 1);
    let line = refused(&text);
    assert_mentions(
        &line,
        &[
            ":9:",
            "model \"a\"",
            "field `kind`",
            "tensorflow",
            "fasttext",
        ],
    );
}

#[test]
fn duplicate_model_name_is_named() {
    let text = two_fasttext_models().replace("name = \"b\"", "name = \"a\"");
    let line = refused(&text);
    assert_mentions(
        &line,
        &[":12:", "model \"a\"", "field `name`", "duplicate", "line 7"],
    );
}

#[test]
fn toml_syntax_error_gives_the_line() {
    let text = two_fasttext_models().replace("name = \"b\"", "name = \"b");
    let line = refused(&text);
    assert_mentions(&line, &[":13"]);
}

#[test]
fn unknown_model_key_is_named() {
    let text = two_fasttext_models().replace("name = \"b\"", "name = \"b\"\nwieght = 2");
    let line = refused(&text);
    assert_mentions(&line, &["model \"b\"", "wieght"]);
}

#[test]
fn onnx_keys_on_a_fasttext_model_are_refused() {
    let text =
        two_fasttext_models().replace("name = \"b\"", "name = \"b\"\nlabels_file = \"x.txt\"");
    let line = refused(&text);
    assert_mentions(
        &line,
        &[":14:", "model \"b\"", "field `labels_file`", "only ONNX"],
    );
}

#[test]
fn label_file_not_matching_the_output_width_is_named() {
    let (dir, _) = manifest("");
    let labels = dir.path().join("three.txt");
    std::fs::write(&labels, "a\nb\nc\n").unwrap();
    let line = refused(&onnx_manifest(&format!(
        "labels_file = \"{}\"",
        labels.display()
    )));
    assert_mentions(&line, &["model \"tfidf\"", "field `labels_file`", "3", "5"]);
}

#[test]
fn label_that_is_not_utf8_is_named() {
    let (dir, _) = manifest("");
    let labels = dir.path().join("bad.txt");
    std::fs::write(
        &labels,
        b"apparel\nbooks\nelec\xfftronics\nhome_garden\ntoys\n",
    )
    .unwrap();
    let line = refused(&onnx_manifest(&format!(
        "labels_file = \"{}\"",
        labels.display()
    )));
    assert_mentions(
        &line,
        &["model \"tfidf\"", "field `labels_file`", "line 3", "UTF-8"],
    );
}

#[test]
fn binding_to_a_tensor_the_model_lacks_is_named() {
    let extra = format!(
        "labels_file = \"{}\"\ninput = \"no_such_input\"",
        onnx("tfidf_lr_nozipmap.labels.txt")
    );
    let line = refused(&onnx_manifest(&extra));
    assert_mentions(
        &line,
        &["model \"tfidf\"", "field `input`", "no_such_input"],
    );
}

#[test]
fn onnx_model_without_a_label_source_is_refused() {
    let line = refused(&onnx_manifest(""));
    assert_mentions(&line, &[":4:", "model \"tfidf\"", "labels_file"]);
}

#[test]
fn vote_configuration_errors_are_refused_with_their_place() {
    let base = two_fasttext_models();
    let cases: [(&str, &[&str]); 7] = [
        ("[vote]\nstrategy = \"plurality\"\n", &[":17:", "plurality", "soft"]),
        (
            "[[rule]]\ntype = \"deny\"\nlabels = [\"no_such_label\"]\n",
            &[":18:", "rule 1 (deny)", "no_such_label"],
        ),
        (
            "[[rule]]\ntype = \"keyword\"\nfield = \"brand\"\nkeywords = [\"x\"]\nlabel = \"laptops\"\naction = \"exclude\"\n",
            &["rule 1 (keyword)", "brand", "title"],
        ),
        (
            "[[rule]]\ntype = \"regex\"\nfield = \"title\"\npattern = \"(unclosed\"\nlabel = \"laptops\"\naction = \"exclude\"\n",
            &["rule 1 (regex)", "pattern"],
        ),
        ("[vote.groups.empty]\nstrategy = \"soft\"\n", &["vote.groups.empty", "no models"]),
        ("", &[]),
        ("", &[]),
    ];
    for (extra, parts) in cases.iter().filter(|c| !c.0.is_empty()) {
        let line = refused(&format!("{base}\n{extra}"));
        assert_mentions(&line, parts);
    }
    let negative = base.replace("name = \"b\"", "name = \"b\"\nweight = -1");
    assert_mentions(
        &refused(&negative),
        &["model \"b\"", "field `weight`", ">= 0"],
    );
    let nan = base.replace("name = \"b\"", "name = \"b\"\nweight = nan");
    assert_mentions(&refused(&nan), &["model \"b\"", "field `weight`"]);
}

/// A copy of `ova.bin` with `bytes` written at `offset`, in its own directory.
fn corrupted_ova(offset: usize, bytes: &[u8]) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut data = std::fs::read(fasttext("ova.bin")).expect("the fixture reads");
    data[offset..offset + bytes.len()].copy_from_slice(bytes);
    let path = dir.path().join("corrupt.bin");
    std::fs::write(&path, data).expect("the copy is written");
    (dir, path.display().to_string())
}

/// Headers that declare more than the file holds once aborted the process (a 137 GB
/// allocation); `check` must refuse them with exit 2 and say what the file declares.
#[test]
fn a_model_declaring_more_than_its_file_holds_is_refused_not_aborted() {
    let huge_dictionary: Vec<u8> = [i32::MAX, i32::MAX - 1, 1]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    // ova.bin (dim 8, 163 words + 2,000 buckets, 10 labels) ends with its input matrix (rows,
    // cols, floats), the quantised-output flag and its output matrix: counted back from the end.
    let ova = std::fs::read(fasttext("ova.bin")).unwrap();
    let input_rows = ova.len() - (16 + 10 * 8 * 4) - 1 - (2_163 * 8 * 4) - 16;
    let cases = [
        (64, huge_dictionary, "declares 2147483647 entries"),
        (
            input_rows,
            12_500_000_000i64.to_le_bytes().to_vec(),
            "the input matrix (12500000000 x 8 floats)",
        ),
    ];
    for (offset, bytes, says) in cases {
        let (_dir, model) = corrupted_ova(offset, &bytes);
        let text = two_fasttext_models().replace(&fasttext("ova.bin"), &model);
        let line = refused(&text);
        assert_mentions(&line, &["model \"b\"", "not a valid fastText model", says]);
    }
}
