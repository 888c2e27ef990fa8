//! Where expansion looks variables up: maps, and Docker-style env lists.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

/// Variables visible to an expansion.
///
/// Names compare exactly (case-sensitive), as on Linux.
pub trait EnvLookup {
    /// The value of `name`, or `None` when unset. A variable set to the empty
    /// string is `Some("")`, which `${v:-x}` and `${v-x}` treat differently.
    fn get(&self, name: &str) -> Option<String>;
}

impl<S: BuildHasher> EnvLookup for HashMap<String, String, S> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned()
    }
}

impl EnvLookup for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        BTreeMap::get(self, name).cloned()
    }
}

/// A list of `(name, value)` pairs; when a name repeats, the last entry wins,
/// as when Docker applies `ENV` lines in order.
impl EnvLookup for [(String, String)] {
    fn get(&self, name: &str) -> Option<String> {
        self.iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    }
}

/// See the impl for `[(String, String)]`: the last entry for a name wins.
impl EnvLookup for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<String> {
        EnvLookup::get(self.as_slice(), name)
    }
}

/// An image-config style list of `NAME=value` entries. The last entry for a
/// name wins; an entry without `=` sets the name to the empty string (as
/// BuildKit's `BuildEnvs` does).
impl EnvLookup for [String] {
    fn get(&self, name: &str) -> Option<String> {
        self.iter().rev().find_map(|entry| {
            let (key, value) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
            (key == name).then(|| value.to_string())
        })
    }
}

/// See the impl for `[String]`: `NAME=value` entries, the last one wins.
impl EnvLookup for Vec<String> {
    fn get(&self, name: &str) -> Option<String> {
        EnvLookup::get(self.as_slice(), name)
    }
}

impl<T: EnvLookup + ?Sized> EnvLookup for &T {
    fn get(&self, name: &str) -> Option<String> {
        (**self).get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn pair_list_last_entry_wins() {
        let env = pairs(&[("car", "hat"), ("foo", "bar"), ("car", "bike")]);
        assert_eq!(EnvLookup::get(&env, "car").as_deref(), Some("bike"));
        assert_eq!(EnvLookup::get(&env, "foo").as_deref(), Some("bar"));
        assert_eq!(EnvLookup::get(&env, "nope"), None);
    }

    #[test]
    fn entry_list_parses_name_value_and_bare_names() {
        let env: Vec<String> = ["foo=bar", "bare", "car=hat", "car=bike", "eq=a=b"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(EnvLookup::get(&env, "car").as_deref(), Some("bike"));
        assert_eq!(EnvLookup::get(&env, "bare").as_deref(), Some(""));
        assert_eq!(EnvLookup::get(&env, "eq").as_deref(), Some("a=b"));
        assert_eq!(
            EnvLookup::get(&env, "FOO"),
            None,
            "names are case-sensitive"
        );
    }

    #[test]
    fn maps_distinguish_empty_from_unset() {
        let mut map = HashMap::new();
        map.insert("NULL".to_string(), String::new());
        assert_eq!(EnvLookup::get(&map, "NULL").as_deref(), Some(""));
        assert_eq!(EnvLookup::get(&map, "OTHER"), None);
        let tree: BTreeMap<String, String> = map.into_iter().collect();
        let by_ref: &dyn EnvLookup = &tree;
        assert_eq!(EnvLookup::get(&by_ref, "NULL").as_deref(), Some(""));
    }
}
