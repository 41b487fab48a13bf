//! A byte-wise double-array trie over the vocabulary: one transition is two loads from one
//! array, so the longest-match walk of a word stays within a few cache lines per byte.

const NO_TOKEN: u32 = u32::MAX;
const FREE: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Slot {
    /// Index of this node's byte-0 child (children live at `base + byte`).
    base: u32,
    /// The parent node owning this slot; `FREE` when unused.
    check: u32,
}

pub struct Trie {
    slots: Vec<Slot>,
    /// Token id that ends at this node, `NO_TOKEN` if none.
    values: Vec<u32>,
}

/// The root node's index.
pub const ROOT: u32 = 0;

impl Trie {
    /// Build from `(token bytes, id)` pairs; a later duplicate overwrites an earlier id.
    pub fn build<'a>(tokens: impl IntoIterator<Item = (&'a [u8], u32)>) -> Trie {
        // 1. A plain pointer trie with sorted children.
        struct Node {
            children: Vec<(u8, u32)>,
            value: u32,
        }
        let mut nodes = vec![Node { children: Vec::new(), value: NO_TOKEN }];
        for (bytes, id) in tokens {
            let mut node = 0usize;
            for &b in bytes {
                node = match nodes[node].children.binary_search_by_key(&b, |&(k, _)| k) {
                    Ok(i) => nodes[node].children[i].1 as usize,
                    Err(i) => {
                        let child = nodes.len() as u32;
                        nodes[node].children.insert(i, (b, child));
                        nodes.push(Node { children: Vec::new(), value: NO_TOKEN });
                        child as usize
                    }
                };
            }
            nodes[node].value = id;
        }

        // 2. Place every node's children with first-fit, breadth first. Candidate bases come from
        //    the set of free slots only (scanning every base is quadratic on a 30k-token vocab).
        let mut slots = vec![Slot { base: 0, check: FREE }; 256];
        let mut values = vec![NO_TOKEN; 256];
        // Slot 0 is the root: mark it used so no child lands there.
        slots[0].check = 0;
        let mut free: std::collections::BTreeSet<usize> = (1..256).collect();
        let mut placed = vec![0u32; nodes.len()]; // pointer-trie node -> slot
        let mut queue = std::collections::VecDeque::from([0usize]);
        while let Some(node) = queue.pop_front() {
            let slot = placed[node] as usize;
            values[slot] = nodes[node].value;
            let children = &nodes[node].children;
            if children.is_empty() {
                continue;
            }
            let first_label = children[0].0 as usize;
            let fits = |slots: &[Slot], base: usize| {
                children.iter().all(|&(b, _)| slots.get(base + b as usize).is_none_or(|s| s.check == FREE))
            };
            let found = free.range(first_label + 1..).copied().find(|&f| fits(&slots, f - first_label));
            let base = match found {
                Some(f) => f - first_label,
                // Nothing fits among the free slots: start past the end.
                None => slots.len().max(first_label + 1) - first_label,
            };
            let needed = base + 256;
            if slots.len() < needed {
                free.extend(slots.len()..needed);
                slots.resize(needed, Slot { base: 0, check: FREE });
                values.resize(needed, NO_TOKEN);
            }
            slots[slot].base = base as u32;
            for &(b, child) in children {
                let child_slot = base + b as usize;
                slots[child_slot].check = slot as u32;
                free.remove(&child_slot);
                placed[child as usize] = child_slot as u32;
                queue.push_back(child as usize);
            }
        }
        // Trailing headroom keeps `base + byte` in bounds for every lookup without a branch.
        let max_base = slots.iter().filter(|s| s.check != FREE).map(|s| s.base as usize).max().unwrap_or(0);
        if slots.len() < max_base + 256 {
            slots.resize(max_base + 256, Slot { base: 0, check: FREE });
            values.resize(max_base + 256, NO_TOKEN);
        }
        slots.shrink_to_fit();
        values.shrink_to_fit();
        Trie { slots, values }
    }

    /// The child of `node` along byte `b`.
    #[inline(always)]
    pub fn child(&self, node: u32, b: u8) -> Option<u32> {
        // SAFETY: `node` is ROOT or came from `child`, and build() leaves 256 slots past the
        // largest base, so `base + b` is in bounds.
        let next = self.slots[node as usize].base as usize + b as usize;
        let slot = unsafe { self.slots.get_unchecked(next) };
        if slot.check == node {
            Some(next as u32)
        } else {
            None
        }
    }

    /// The node reached from `node` along `bytes`, if that path exists.
    pub fn walk(&self, mut node: u32, bytes: &[u8]) -> Option<u32> {
        for &b in bytes {
            node = self.child(node, b)?;
        }
        Some(node)
    }

    /// The token id ending at `node`, if any.
    #[inline(always)]
    pub fn value(&self, node: u32) -> Option<u32> {
        // SAFETY: `node` is ROOT or came from `child`, so it indexes `values` (as long as `slots`).
        let v = unsafe { *self.values.get_unchecked(node as usize) };
        (v != NO_TOKEN).then_some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_exactly_the_inserted_tokens() {
        let words: Vec<String> = ["a", "ab", "abc", "b", "##b", "##bc", "é", "中文", "zz"].iter().map(|s| s.to_string()).collect();
        let trie = Trie::build(words.iter().enumerate().map(|(i, w)| (w.as_bytes(), i as u32)));
        for (i, w) in words.iter().enumerate() {
            assert_eq!(trie.walk(ROOT, w.as_bytes()).and_then(|n| trie.value(n)), Some(i as u32), "{w}");
        }
        for missing in ["abcd", "c", "##", "#", "中", "zzz", ""] {
            let found = trie.walk(ROOT, missing.as_bytes()).and_then(|n| trie.value(n));
            assert_eq!(found, None, "{missing:?}");
        }
        assert!(trie.walk(ROOT, b"##").is_some());
    }
}
