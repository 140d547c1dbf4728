//! Graph checks: node names, `needs`, cycles, and which nodes an expression
//! may read (only nodes it transitively needs, so their output exists).

use super::ValidationError;
use crate::expr::{Program, referenced_nodes};
use sluice_crds::WorkflowSpec;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

/// Node name → index of its first occurrence. Reports bad and duplicate names.
pub(super) fn check_names(
    spec: &WorkflowSpec,
    errors: &mut Vec<ValidationError>,
) -> BTreeMap<String, usize> {
    let mut names = BTreeMap::new();
    for (index, node) in spec.nodes.iter().enumerate() {
        let path = format!("spec.nodes[{index}].name");
        if !is_dns_label(&node.name) {
            errors.push(ValidationError::new(
                path.clone(),
                format!(
                    "node name {:?} is invalid: use 1 to 63 lowercase letters, digits and '-', starting and ending with a letter or digit",
                    node.name
                ),
            ));
        }
        if let Some(first) = names.get(&node.name) {
            errors.push(ValidationError::new(
                path,
                format!(
                    "duplicate node name {:?} (also spec.nodes[{first}]): rename one of the two nodes",
                    node.name
                ),
            ));
        } else {
            names.insert(node.name.clone(), index);
        }
    }
    names
}

fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// Each node's needs as indices. Reports needs naming nothing or the node itself.
///
/// With 1,000 nodes of 64 needs this runs 64,000 times per review, so the
/// names are looked up in a hash map and field paths are only built for
/// errors.
pub(super) fn resolve_needs(
    spec: &WorkflowSpec,
    names: &BTreeMap<String, usize>,
    errors: &mut Vec<ValidationError>,
) -> Vec<Vec<usize>> {
    let index_of: HashMap<&str, usize, BuildHasherDefault<Fnv>> = names
        .iter()
        .map(|(name, index)| (name.as_str(), *index))
        .collect();
    // `added[target] == index` when node `index` already lists `target`:
    // a repeated need is dropped without searching the list.
    let mut added = vec![usize::MAX; spec.nodes.len()];
    spec.nodes
        .iter()
        .enumerate()
        .map(|(index, node)| {
            let mut resolved = Vec::with_capacity(node.needs.len());
            for (position, need) in node.needs.iter().enumerate() {
                let path = || format!("spec.nodes[{index}].needs[{position}]");
                match index_of.get(need.as_str()) {
                    Some(&target) if target == index || *need == node.name => {
                        errors.push(ValidationError::new(
                            path(),
                            format!(
                                "node {:?} needs itself: remove {need:?} from its needs",
                                node.name
                            ),
                        ));
                    }
                    Some(&target) => {
                        if added[target] != index {
                            added[target] = index;
                            resolved.push(target);
                        }
                    }
                    None => {
                        let suggestion = closest(need, names.keys())
                            .map(|name| format!("did you mean {name:?}? "))
                            .unwrap_or_default();
                        errors.push(ValidationError::new(
                            path(),
                            format!(
                                "node {:?} needs {need:?}, which is not a node of this workflow: {suggestion}fix the name or add a node named {need:?}",
                                node.name
                            ),
                        ));
                    }
                }
            }
            resolved
        })
        .collect()
}

/// FNV-1a for the name map: node names are short, and a workflow has at
/// most `MAX_NODES` of them, so even names crafted to collide cost little;
/// SipHash's resistance is not worth its time here.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }
}

/// The name closest to `name` by edit distance, when close enough.
fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a String>) -> Option<&'a String> {
    candidates
        .map(|candidate| (edit_distance(name, candidate), candidate))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            current.push(
                (previous[j] + cost)
                    .min(previous[j + 1] + 1)
                    .min(current[j] + 1),
            );
        }
        previous = current;
    }
    previous[b.len()]
}

/// Reports every cycle of `needs` once, with its path.
pub(super) fn check_cycles(
    spec: &WorkflowSpec,
    needs: &[Vec<usize>],
    errors: &mut Vec<ValidationError>,
) {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut marks = vec![Mark::New; needs.len()];
    let mut reported = BTreeSet::new();
    for root in 0..needs.len() {
        if marks[root] != Mark::New {
            continue;
        }
        // Iterative depth-first search; `stack` holds (node, next need to visit).
        let mut stack = vec![(root, 0usize)];
        marks[root] = Mark::Active;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&need) = needs[node].get(*next) {
                *next += 1;
                match marks[need] {
                    Mark::New => {
                        marks[need] = Mark::Active;
                        stack.push((need, 0));
                    }
                    Mark::Active => {
                        let start = stack.iter().position(|(n, _)| *n == need).unwrap_or(0);
                        let cycle: Vec<usize> = stack[start..].iter().map(|(n, _)| *n).collect();
                        let key: BTreeSet<usize> = cycle.iter().copied().collect();
                        if reported.insert(key.into_iter().collect::<Vec<_>>()) {
                            let mut path: Vec<&str> =
                                cycle.iter().map(|n| spec.nodes[*n].name.as_str()).collect();
                            path.push(&spec.nodes[need].name);
                            errors.push(ValidationError::new(
                                format!("spec.nodes[{}].needs", cycle[0]),
                                format!(
                                    "needs form a cycle: {} (each node needs the next): remove one of these needs",
                                    path.join(" → ")
                                ),
                            ));
                        }
                    }
                    Mark::Done => {}
                }
            } else {
                marks[node] = Mark::Done;
                stack.pop();
            }
        }
    }
}

/// For each node, every node it needs directly or transitively: one bit
/// row per node, filled in depth-first post-order so each row is the union
/// of its needs' finished rows (a few thousand word operations for 1,000
/// nodes with 64 needs each, where sets of indices cost tens of millions).
/// Inside a cycle (already reported) a row may be incomplete.
pub(super) struct Upstream {
    words: usize,
    bits: Vec<u64>,
}

impl Upstream {
    /// Whether `node` needs `target`, directly or transitively.
    pub(super) fn contains(&self, node: usize, target: usize) -> bool {
        self.bits
            .get(node * self.words + target / 64)
            .is_some_and(|word| word & (1 << (target % 64)) != 0)
    }
}

/// The transitive needs of every node.
pub(super) fn upstream(needs: &[Vec<usize>]) -> Upstream {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let words = needs.len().div_ceil(64);
    let mut bits = vec![0u64; needs.len() * words];
    let mut marks = vec![Mark::New; needs.len()];
    for root in 0..needs.len() {
        if marks[root] != Mark::New {
            continue;
        }
        marks[root] = Mark::Active;
        let mut stack = vec![(root, 0usize)];
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&need) = needs[node].get(*next) {
                *next += 1;
                if marks[need] == Mark::New {
                    marks[need] = Mark::Active;
                    stack.push((need, 0));
                }
                continue;
            }
            for &need in &needs[node] {
                bits[node * words + need / 64] |= 1 << (need % 64);
                if need != node {
                    for word in 0..words {
                        bits[node * words + word] |= bits[need * words + word];
                    }
                }
            }
            marks[node] = Mark::Done;
            stack.pop();
        }
    }
    Upstream { words, bits }
}

/// Checks that `node`'s expressions read only nodes it transitively needs.
pub(super) fn check_reads(
    spec: &WorkflowSpec,
    node: usize,
    reads: &[(String, Program)],
    names: &BTreeMap<String, usize>,
    upstream: &Upstream,
    errors: &mut Vec<ValidationError>,
) {
    let name = &spec.nodes[node].name;
    for (path, program) in reads {
        for read in referenced_nodes(program.source()) {
            match names.get(&read) {
                None => errors.push(ValidationError::new(
                    path.clone(),
                    format!(
                        "node {name:?} reads .nodes.{read}, but there is no node named {read:?}: fix the name in the expression"
                    ),
                )),
                Some(&target) if target == node => errors.push(ValidationError::new(
                    path.clone(),
                    format!(
                        "node {name:?} reads its own output (.nodes.{read}), which does not exist while it runs: read .item, .input or a node it needs instead"
                    ),
                )),
                Some(&target) if !upstream.contains(node, target) => {
                    errors.push(ValidationError::new(
                        path.clone(),
                        format!(
                            "node {name:?} reads .nodes.{read} but does not need {read:?}, so it may run first: add {read:?} to its needs"
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
    }
}

/// Checks that `spec.output` reads only existing nodes.
pub(super) fn check_output_reads(
    reads: &[(String, Program)],
    names: &BTreeMap<String, usize>,
    errors: &mut Vec<ValidationError>,
) {
    for (path, program) in reads {
        for read in referenced_nodes(program.source()) {
            if !names.contains_key(&read) {
                errors.push(ValidationError::new(
                    path.clone(),
                    format!(
                        "the output reads .nodes.{read}, but there is no node named {read:?}: fix the name in the expression"
                    ),
                ));
            }
        }
    }
}
