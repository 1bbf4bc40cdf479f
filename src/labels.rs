//! The ensemble's one label space: every model's labels mapped by name onto global ids once, at load
//! time, so that requests only ever touch arrays of ids and scores.

use std::collections::HashMap;

/// Global label ids `0..len()`, each with its name.
#[derive(Debug, Clone, Default)]
pub struct LabelSpace {
    names: Vec<String>,
    index: HashMap<String, u32>,
}

impl LabelSpace {
    /// A label space with exactly these labels, in this order. Duplicates are reported by name.
    pub fn from_names(names: Vec<String>) -> Result<Self, String> {
        let mut index = HashMap::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            if index.insert(name.clone(), i as u32).is_some() {
                return Err(format!("label {name:?} appears twice"));
            }
        }
        Ok(LabelSpace { names, index })
    }

    /// The union of several label lists, in order of first appearance.
    pub fn union<'a>(lists: impl IntoIterator<Item = &'a [String]>) -> Self {
        let mut space = LabelSpace::default();
        for list in lists {
            for name in list {
                space.intern(name);
            }
        }
        space
    }

    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.index.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_owned());
        self.index.insert(name.to_owned(), id);
        id
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn id(&self, name: &str) -> Option<u32> {
        self.index.get(name).copied()
    }

    /// Name of a global id. Panics on an id that this space never handed out (a bug).
    pub fn name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Maps a model's own labels onto global ids, or names the first label this space lacks.
    pub fn align(&self, model_labels: &[String]) -> Result<Vec<u32>, String> {
        model_labels
            .iter()
            .map(|l| self.id(l).ok_or_else(|| l.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn union_keeps_first_appearance_order() {
        let a = s(&["x", "y"]);
        let b = s(&["z", "x"]);
        let space = LabelSpace::union([a.as_slice(), b.as_slice()]);
        assert_eq!(space.names(), &s(&["x", "y", "z"])[..]);
        assert_eq!(space.align(&b).unwrap(), vec![2, 0]);
    }

    #[test]
    fn align_names_missing_label() {
        let space = LabelSpace::from_names(s(&["a"])).unwrap();
        assert_eq!(space.align(&s(&["a", "b"])).unwrap_err(), "b");
    }

    #[test]
    fn duplicate_canonical_label_is_rejected() {
        assert!(LabelSpace::from_names(s(&["a", "a"])).is_err());
    }
}
