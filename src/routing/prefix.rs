//! Longest-prefix matching of keys: a byte trie stored in two flat arrays, so a lookup walks
//! at most one node per byte of the key (and of the longest prefix), whatever the number of
//! prefixes, with no allocation. Pure: no I/O.

use std::collections::BTreeMap;

/// No value at a node.
const NONE: u32 = u32::MAX;
/// A node with more edges than this is searched by bisection, else linearly.
const LINEAR: usize = 8;

/// A set of byte-string prefixes, each with a value; [`Prefixes::longest`] finds the longest
/// one a key starts with.
#[derive(Debug, Default)]
pub struct Prefixes {
    /// Node 0 is the root (the empty prefix).
    nodes: Vec<Node>,
    /// Every node's edges, each node's contiguous and sorted by byte.
    edges: Vec<(u8, u32)>,
    /// ASCII letters compare in either case: prefixes are stored lowercase and keys are
    /// lowercased byte by byte as they are walked.
    fold: bool,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    /// The value of the prefix that ends here, or [`NONE`].
    value: u32,
    first: u32,
    count: u32,
}

impl Prefixes {
    /// The trie of `entries` (a prefix and its value; a later duplicate replaces an earlier
    /// one). With `fold`, ASCII letters match in either case.
    pub fn new<'a>(entries: impl IntoIterator<Item = (&'a [u8], u32)>, fold: bool) -> Prefixes {
        // Built as a tree of maps, then laid out breadth first.
        #[derive(Default)]
        struct Building {
            value: Option<u32>,
            children: BTreeMap<u8, Building>,
        }
        let mut root = Building::default();
        for (prefix, value) in entries {
            let mut node = &mut root;
            for &b in prefix {
                let b = if fold { b.to_ascii_lowercase() } else { b };
                node = node.children.entry(b).or_default();
            }
            node.value = Some(value);
        }
        let mut trie = Prefixes {
            nodes: Vec::new(),
            edges: Vec::new(),
            fold,
        };
        let mut queue = std::collections::VecDeque::from([root]);
        // Node i's children get the next free node numbers, in queue order.
        let mut next = 1u32;
        while let Some(node) = queue.pop_front() {
            let first = trie.edges.len() as u32;
            for (b, child) in node.children {
                trie.edges.push((b, next));
                next += 1;
                queue.push_back(child);
            }
            trie.nodes.push(Node {
                value: node.value.unwrap_or(NONE),
                first,
                count: trie.edges.len() as u32 - first,
            });
        }
        trie
    }

    /// Whether there is no prefix at all.
    pub fn is_empty(&self) -> bool {
        self.nodes.iter().all(|n| n.value == NONE)
    }

    /// The value and length of the longest prefix of `key` (the whole key included), if any.
    #[inline]
    pub fn longest(&self, key: &[u8]) -> Option<(u32, usize)> {
        let mut node = *self.nodes.first()?;
        let mut found = (node.value != NONE).then_some((node.value, 0));
        for (depth, &b) in key.iter().enumerate() {
            let b = if self.fold { b.to_ascii_lowercase() } else { b };
            let Some(child) = self.child(node, b) else {
                break;
            };
            node = child;
            if node.value != NONE {
                found = Some((node.value, depth + 1));
            }
        }
        found
    }

    #[inline]
    fn child(&self, node: Node, b: u8) -> Option<Node> {
        let edges = self
            .edges
            .get(node.first as usize..(node.first + node.count) as usize)?;
        let to = if edges.len() <= LINEAR {
            edges.iter().find(|e| e.0 == b)?.1
        } else {
            let i = edges.binary_search_by_key(&b, |e| e.0).ok()?;
            edges[i].1
        };
        self.nodes.get(to as usize).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn trie(prefixes: &[&str], fold: bool) -> Prefixes {
        Prefixes::new(
            prefixes
                .iter()
                .enumerate()
                .map(|(i, p)| (p.as_bytes(), i as u32)),
            fold,
        )
    }

    #[test]
    fn the_longest_prefix_wins_whatever_the_order() {
        let t = trie(&["user:", "u", "user:admin:", "session:"], false);
        assert_eq!(t.longest(b"user:1"), Some((0, 5)));
        assert_eq!(t.longest(b"user:admin:7"), Some((2, 11)));
        assert_eq!(t.longest(b"ux"), Some((1, 1)));
        // A key equal to the prefix matches it.
        assert_eq!(t.longest(b"session:"), Some((3, 8)));
        assert_eq!(t.longest(b"session"), None);
        assert_eq!(t.longest(b""), None);
        assert_eq!(t.longest(b"other"), None);
        // Byte-wise: case and non-UTF-8 bytes are compared as they are.
        assert_eq!(t.longest(b"USER:1"), None);
        let t = Prefixes::new([(&b"\xff\x00k"[..], 9)], false);
        assert_eq!(t.longest(b"\xff\x00key"), Some((9, 3)));
        assert!(!t.is_empty());
        assert!(Prefixes::new([], false).is_empty());
        assert_eq!(Prefixes::new([], false).longest(b"x"), None);
    }

    #[test]
    fn folded_prefixes_match_either_case() {
        let t = trie(&["User:", "SESSION:"], true);
        assert_eq!(t.longest(b"user:1"), Some((0, 5)));
        assert_eq!(t.longest(b"USER:1"), Some((0, 5)));
        assert_eq!(t.longest(b"Session:x"), Some((1, 8)));
    }

    #[test]
    fn wide_nodes_are_bisected() {
        let names: Vec<String> = (0..=255u8).map(|b| format!("{}x", b as char)).collect();
        let t = Prefixes::new(
            names
                .iter()
                .enumerate()
                .map(|(i, p)| (p.as_bytes(), i as u32)),
            false,
        );
        for (i, name) in names.iter().enumerate() {
            let key = format!("{name}-key");
            assert_eq!(t.longest(key.as_bytes()), Some((i as u32, name.len())));
        }
    }

    proptest! {
        /// The trie finds what a scan of every prefix finds.
        #[test]
        fn agrees_with_a_linear_scan(
            prefixes in proptest::collection::vec("[abAB:]{1,4}", 0..20),
            keys in proptest::collection::vec("[abAB:]{0,6}", 1..20),
            fold: bool,
        ) {
            let t = Prefixes::new(prefixes.iter().enumerate().map(|(i, p)| (p.as_bytes(), i as u32)), fold);
            let norm = |s: &str| if fold { s.to_ascii_lowercase() } else { s.to_string() };
            for key in &keys {
                // The last of equal prefixes wins, as in `new`.
                let expected = prefixes
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| norm(key).starts_with(&norm(p)))
                    .max_by_key(|(i, p)| (p.len(), *i))
                    .map(|(i, p)| (i as u32, p.len()));
                prop_assert_eq!(t.longest(key.as_bytes()), expected);
            }
        }
    }
}
