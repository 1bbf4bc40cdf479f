//! Label names as taxonomy paths (`Home > Kitchen > Knives`), and label-name prefixes.
//!
//! Everything is resolved once per ensemble load. Names are kept sorted so that any prefix selects
//! one contiguous range: request candidates, allow/deny lists and "the labels below a node" are
//! binary searches, never string scans over 7,000 names per request.
//!
//! Nodes: ids `0..labels` are the labels themselves; every path prefix that is not itself a label
//! (`Home > Kitchen` when only leaves are labels) gets a node id after them, so that taxonomy
//! backoff can answer it. [`super::Combiner::label_name`] names both kinds.

use std::collections::HashMap;
use std::ops::Range;

use crate::labels::LabelSpace;

const NONE: u32 = u32::MAX;

#[derive(Debug)]
pub(crate) struct Taxonomy {
    sep: String,
    labels: usize,
    /// Every label's (name, id), sorted by name.
    sorted: Vec<(Box<str>, u32)>,
    /// Where each label sits in `sorted`.
    position: Vec<u32>,
    /// Per node: its parent node, or `NONE` at the top.
    parent: Vec<u32>,
    /// Per node: the range of `sorted` holding the labels strictly below it.
    below: Vec<(u32, u32)>,
    /// Names of the nodes that are not labels (node `labels + i`).
    inner_names: Vec<String>,
}

impl Taxonomy {
    pub(crate) fn new(space: &LabelSpace, sep: &str) -> Self {
        let labels = space.len();
        let mut sorted: Vec<(Box<str>, u32)> = space
            .names()
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str().into(), i as u32))
            .collect();
        sorted.sort_unstable();
        let mut position = vec![0u32; labels];
        for (p, (_, id)) in sorted.iter().enumerate() {
            position[*id as usize] = p as u32;
        }
        let mut t = Taxonomy {
            sep: sep.to_owned(),
            labels,
            sorted,
            position,
            parent: vec![NONE; labels],
            below: Vec::new(),
            inner_names: Vec::new(),
        };
        let mut inner: HashMap<String, u32> = HashMap::new();
        for id in 0..labels as u32 {
            let mut node = id;
            // Walk up, creating inner nodes, until reaching a node whose parent is already known.
            while t.parent[node as usize] == NONE {
                let Some(parent_name) = t.parent_name(t.name(node)).map(str::to_owned) else {
                    break;
                };
                let parent = match space.id(&parent_name) {
                    Some(p) => p,
                    None => *inner.entry(parent_name.clone()).or_insert_with(|| {
                        t.inner_names.push(parent_name);
                        t.parent.push(NONE);
                        (labels + t.inner_names.len() - 1) as u32
                    }),
                };
                t.parent[node as usize] = parent;
                node = parent;
            }
        }
        t.below = (0..t.parent.len() as u32)
            .map(|n| {
                let r = t.prefix_range(&format!("{}{}", t.name(n), t.sep));
                (r.start as u32, r.end as u32)
            })
            .collect();
        t
    }

    /// `Home > Kitchen` for `Home > Kitchen > Knives`; None at the top of a path.
    fn parent_name<'n>(&self, name: &'n str) -> Option<&'n str> {
        name.rfind(&self.sep)
            .map(|i| &name[..i])
            .filter(|p| !p.is_empty())
    }

    /// Name of a label or inner node.
    pub(crate) fn name(&self, node: u32) -> &str {
        let n = node as usize;
        if n < self.labels {
            &self.sorted[self.position[n] as usize].0
        } else {
            self.inner_names.get(n - self.labels).map_or("", |s| s)
        }
    }

    pub(crate) fn parent(&self, node: u32) -> Option<u32> {
        self.parent
            .get(node as usize)
            .copied()
            .filter(|&p| p != NONE)
    }

    /// Whether any label name has a parent in the path sense.
    pub(crate) fn has_paths(&self) -> bool {
        self.parent.iter().any(|&p| p != NONE)
    }

    /// Positions (in name order) of the labels whose name starts with `prefix`.
    pub(crate) fn prefix_range(&self, prefix: &str) -> Range<usize> {
        let start = self.sorted.partition_point(|(n, _)| &**n < prefix);
        let len = self.sorted[start..].partition_point(|(n, _)| n.starts_with(prefix));
        start..start + len
    }

    /// Label ids at `range` positions of the name order.
    pub(crate) fn ids(&self, range: Range<usize>) -> impl Iterator<Item = u32> + '_ {
        self.sorted[range].iter().map(|(_, id)| *id)
    }

    /// Labels whose name starts with `prefix`.
    pub(crate) fn with_prefix(&self, prefix: &str) -> impl Iterator<Item = u32> + '_ {
        self.ids(self.prefix_range(prefix))
    }

    /// Labels strictly below `node` in the taxonomy.
    pub(crate) fn below(&self, node: u32) -> impl Iterator<Item = u32> + '_ {
        let (a, b) = self.below.get(node as usize).copied().unwrap_or((0, 0));
        self.ids(a as usize..b as usize)
    }

    /// `label` is `node` or lies below it.
    pub(crate) fn covers(&self, node: u32, label: u32) -> bool {
        let (a, b) = self.below.get(node as usize).copied().unwrap_or((0, 0));
        label == node || (a..b).contains(&self.position[label as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(names: &[&str]) -> LabelSpace {
        LabelSpace::from_names(names.iter().map(|s| s.to_string()).collect()).unwrap()
    }

    #[test]
    fn paths_get_inner_nodes_and_ranges() {
        // 0 "Home > Kitchen > Knives", 1 "Home > Kitchen > Forks", 2 "Home", 3 "Garden > Hoses".
        // "Home > Kitchen" is not a label: inner node 4; its parent is label 2 ("Home").
        // "Garden" is inner node 5.
        let s = space(&[
            "Home > Kitchen > Knives",
            "Home > Kitchen > Forks",
            "Home",
            "Garden > Hoses",
        ]);
        let t = Taxonomy::new(&s, " > ");
        assert_eq!(t.parent(0), Some(4));
        assert_eq!(t.parent(1), Some(4));
        assert_eq!(t.name(4), "Home > Kitchen");
        assert_eq!(t.parent(4), Some(2));
        assert_eq!(t.parent(2), None);
        assert_eq!(t.name(5), "Garden");
        let mut under_home: Vec<u32> = t.below(2).collect();
        under_home.sort();
        assert_eq!(under_home, vec![0, 1]);
        assert!(t.covers(4, 0) && t.covers(2, 1) && t.covers(3, 3) && !t.covers(4, 3));
        assert!(t.has_paths());
    }

    #[test]
    fn prefixes_select_by_name_not_by_path() {
        let s = space(&["ab", "abc", "b", "a"]);
        let t = Taxonomy::new(&s, " > ");
        let mut v: Vec<u32> = t.with_prefix("ab").collect();
        v.sort();
        assert_eq!(v, vec![0, 1]);
        assert_eq!(t.with_prefix("z").count(), 0);
        assert_eq!(t.with_prefix("").count(), 4);
        assert!(!t.has_paths());
    }
}
