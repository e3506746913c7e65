//! A layered layout of boxes joined by edges, for the SVG ER diagram: parents
//! in columns left of their children, a column per layer, tables with no
//! relationship in rows of their own below. Pure geometry, deterministic
//! (no hash maps, ties broken by index), linear-ish in boxes and edges.
//!
//! Written here rather than taken from `layout-rs`: that crate lays out and
//! renders its own SVG (shapes, fonts, styles), whereas the diagram needs
//! its own elements (`data-findings`, classes, rows as edge ends), and a
//! layered layout of boxes without edge routing is a few hundred lines.
//! The method is Sugiyama's, reduced: break cycles by dropping the DFS back
//! edges, layer by longest path (sources pulled next to their first child),
//! order each layer by barycenters over a few sweeps, place columns, and
//! split a layer too tall into several columns.

use std::collections::BTreeSet;

/// A placed box.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl Rect {
    pub fn right(&self) -> f64 {
        self.x + self.w
    }

    pub fn bottom(&self) -> f64 {
        self.y + self.h
    }

    /// Whether the two share any area (touching edges do not count).
    pub fn overlaps(&self, other: &Rect) -> bool {
        self.x < other.right()
            && other.x < self.right()
            && self.y < other.bottom()
            && other.y < self.bottom()
    }
}

/// Where every box went, and the extent of the drawing.
#[derive(Debug, Clone)]
pub struct Layout {
    /// One per box, in the order given.
    pub boxes: Vec<Rect>,
    pub width: f64,
    pub height: f64,
    /// The top of the rows of unrelated boxes, when there are any.
    pub unrelated_top: Option<f64>,
}

/// Blank space around the drawing (room for self-reference loops).
pub const MARGIN: f64 = 40.0;
/// Vertical space between boxes of a column.
pub const ROW_GAP: f64 = 24.0;
/// Space above the rows of unrelated boxes (their caption).
const UNRELATED_GAP: f64 = 56.0;
/// Columns are split when taller than this, or than the square root of the
/// drawing's area if more.
const MIN_COLUMN_HEIGHT: f64 = 900.0;
/// Barycenter sweeps (each one forward and one backward).
const SWEEPS: usize = 4;

/// Lays out boxes of `sizes` (width, height) joined by `edges` (parent,
/// child); `column_gap` is the space between columns (for edge labels and
/// self-reference loops). Edges naming no box are ignored.
pub fn layout(sizes: &[(f64, f64)], edges: &[(usize, usize)], column_gap: f64) -> Layout {
    let n = sizes.len();
    let mut children: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
    let mut neighbours: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
    // A table that refers only to itself stands in a column, not among the
    // unrelated ones: its loop needs the space a column gap gives.
    let mut looped = vec![false; n];
    for &(p, c) in edges {
        if p < n && c < n {
            if p == c {
                looped[p] = true;
            } else {
                children[p].insert(c);
                neighbours[p].insert(c);
                neighbours[c].insert(p);
            }
        }
    }
    let is_related = |v: usize| looped[v] || !neighbours[v].is_empty();
    let related: Vec<usize> = (0..n).filter(|&v| is_related(v)).collect();
    let kept = acyclic(&children);
    let layer = layers(n, &kept);

    let depth = related.iter().map(|&v| layer[v] + 1).max().unwrap_or(0);
    let mut order: Vec<Vec<usize>> = vec![Vec::new(); depth];
    for &v in &related {
        order[layer[v]].push(v);
    }
    reduce_crossings(&mut order, &layer, &neighbours, n);

    let mut boxes = vec![
        Rect {
            x: 0.0,
            y: 0.0,
            w: 0.0,
            h: 0.0
        };
        n
    ];
    let area: f64 = sizes
        .iter()
        .map(|(w, h)| (w + column_gap) * (h + ROW_GAP))
        .sum();
    let max_height = area.sqrt().max(MIN_COLUMN_HEIGHT);
    let mut placed = vec![false; n];
    let mut x = MARGIN;
    let mut bottom = MARGIN;
    let mut right = MARGIN;
    for layer_nodes in &order {
        for column in split(layer_nodes, sizes, max_height) {
            let width = column.iter().map(|&v| sizes[v].0).fold(0.0, f64::max);
            let mut next_top = MARGIN;
            for &v in &column {
                let (w, h) = sizes[v];
                // Pulled level with the boxes it joins in earlier columns,
                // never above the box before it.
                let joined: Vec<f64> = neighbours[v]
                    .iter()
                    .filter(|&&u| placed[u])
                    .map(|&u| boxes[u].y + boxes[u].h / 2.0)
                    .collect();
                let wanted = if joined.is_empty() {
                    next_top
                } else {
                    joined.iter().sum::<f64>() / joined.len() as f64 - h / 2.0
                };
                let y = wanted.max(next_top);
                boxes[v] = Rect { x, y, w, h };
                placed[v] = true;
                next_top = y + h + ROW_GAP;
                bottom = bottom.max(y + h);
            }
            right = right.max(x + width);
            x += width + column_gap;
        }
    }

    let unrelated: Vec<usize> = (0..n).filter(|&v| !is_related(v)).collect();
    let mut unrelated_top = None;
    if !unrelated.is_empty() {
        let top = if related.is_empty() {
            MARGIN
        } else {
            bottom + UNRELATED_GAP
        };
        unrelated_top = Some(top);
        let wrap = right.max(MARGIN + MIN_COLUMN_HEIGHT);
        let (mut x, mut y, mut row_height) = (MARGIN, top, 0.0_f64);
        for v in unrelated {
            let (w, h) = sizes[v];
            if x > MARGIN && x + w > wrap {
                x = MARGIN;
                y += row_height + ROW_GAP;
                row_height = 0.0;
            }
            boxes[v] = Rect { x, y, w, h };
            x += w + ROW_GAP;
            row_height = row_height.max(h);
            right = right.max(x - ROW_GAP);
            bottom = bottom.max(y + h);
        }
    }

    Layout {
        boxes,
        width: right + MARGIN,
        height: bottom + MARGIN,
        unrelated_top,
    }
}

/// The edges left once every cycle is broken: a depth-first search from each
/// box in index order drops the edges back to a box still on its path.
fn acyclic(children: &[BTreeSet<usize>]) -> Vec<Vec<usize>> {
    const NEW: u8 = 0;
    const OPEN: u8 = 1;
    const DONE: u8 = 2;
    let n = children.len();
    let mut state = vec![NEW; n];
    let mut kept: Vec<Vec<usize>> = vec![Vec::new(); n];
    let lists: Vec<Vec<usize>> = children
        .iter()
        .map(|c| c.iter().copied().collect())
        .collect();
    for root in 0..n {
        if state[root] != NEW {
            continue;
        }
        // (box, index of its next child to visit): no recursion, so that a
        // chain of thousands of tables cannot overflow the stack.
        let mut stack = vec![(root, 0)];
        state[root] = OPEN;
        while let Some(top) = stack.last_mut() {
            let (v, i) = *top;
            if let Some(&c) = lists[v].get(i) {
                top.1 += 1;
                match state[c] {
                    OPEN => {} // a back edge: dropped
                    DONE => kept[v].push(c),
                    _ => {
                        kept[v].push(c);
                        state[c] = OPEN;
                        stack.push((c, 0));
                    }
                }
            } else {
                state[v] = DONE;
                stack.pop();
            }
        }
    }
    kept
}

/// Each box's layer: the longest path from a source, then each source moved
/// to just left of its nearest child, so that a lookup table used only deep
/// in the graph sits beside its user.
fn layers(n: usize, kept: &[Vec<usize>]) -> Vec<usize> {
    let mut indegree = vec![0usize; n];
    for cs in kept {
        for &c in cs {
            indegree[c] += 1;
        }
    }
    let mut remaining = indegree.clone();
    let mut ready: BTreeSet<usize> = (0..n).filter(|&v| remaining[v] == 0).collect();
    let mut topological = Vec::with_capacity(n);
    while let Some(v) = ready.pop_first() {
        topological.push(v);
        for &c in &kept[v] {
            remaining[c] -= 1;
            if remaining[c] == 0 {
                ready.insert(c);
            }
        }
    }
    let mut layer = vec![0usize; n];
    for &v in &topological {
        for &c in &kept[v] {
            layer[c] = layer[c].max(layer[v] + 1);
        }
    }
    for &v in topological.iter().rev() {
        if indegree[v] == 0
            && let Some(nearest) = kept[v].iter().map(|&c| layer[c]).min()
        {
            layer[v] = nearest - 1;
        }
    }
    layer
}

/// Orders each layer by the mean position of its neighbours in the layers
/// already swept (a box's position being its rank over its layer's size).
fn reduce_crossings(
    order: &mut [Vec<usize>],
    layer: &[usize],
    neighbours: &[BTreeSet<usize>],
    n: usize,
) {
    let mut position = vec![0.0_f64; n];
    let rank = |order: &[Vec<usize>], position: &mut [f64]| {
        for nodes in order {
            for (i, &v) in nodes.iter().enumerate() {
                position[v] = (i as f64 + 0.5) / nodes.len() as f64;
            }
        }
    };
    rank(order, &mut position);
    let depth = order.len();
    for _ in 0..SWEEPS {
        for forward in [true, false] {
            let sequence: Vec<usize> = if forward {
                (1..depth).collect()
            } else {
                (0..depth.saturating_sub(1)).rev().collect()
            };
            for l in sequence {
                let mut keyed: Vec<(f64, f64, usize)> = order[l]
                    .iter()
                    .map(|&v| {
                        let near: Vec<f64> = neighbours[v]
                            .iter()
                            .filter(|&&u| if forward { layer[u] < l } else { layer[u] > l })
                            .map(|&u| position[u])
                            .collect();
                        let key = if near.is_empty() {
                            position[v]
                        } else {
                            near.iter().sum::<f64>() / near.len() as f64
                        };
                        (key, position[v], v)
                    })
                    .collect();
                keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
                order[l] = keyed.into_iter().map(|(_, _, v)| v).collect();
                for (i, &v) in order[l].iter().enumerate() {
                    position[v] = (i as f64 + 0.5) / order[l].len() as f64;
                }
            }
        }
    }
}

/// A layer cut into columns no taller than `max_height` (each at least one box).
fn split(nodes: &[usize], sizes: &[(f64, f64)], max_height: f64) -> Vec<Vec<usize>> {
    let mut columns: Vec<Vec<usize>> = Vec::new();
    let mut height = 0.0;
    for &v in nodes {
        let h = sizes[v].1;
        match columns.last_mut() {
            Some(column) if height + ROW_GAP + h <= max_height => {
                column.push(v);
                height += ROW_GAP + h;
            }
            _ => {
                columns.push(vec![v]);
                height = h;
            }
        }
    }
    columns
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn assert_sound(l: &Layout) {
        for (i, a) in l.boxes.iter().enumerate() {
            assert!(
                a.x >= 0.0 && a.y >= 0.0 && a.right() <= l.width && a.bottom() <= l.height,
                "box {i} {a:?} outside {} x {}",
                l.width,
                l.height
            );
            for (j, b) in l.boxes.iter().enumerate().skip(i + 1) {
                assert!(!a.overlaps(b), "boxes {i} {a:?} and {j} {b:?} overlap");
            }
        }
    }

    #[test]
    fn parents_are_left_of_their_children() {
        // 0 ← 1 ← 2, and 3 → 2: a lookup table used only by the deepest.
        let l = layout(&[(100.0, 60.0); 4], &[(0, 1), (1, 2), (3, 2)], 80.0);
        assert_sound(&l);
        let b = &l.boxes;
        assert!(b[0].x < b[1].x && b[1].x < b[2].x);
        assert_eq!(b[3].x, b[1].x, "the source is pulled beside its child");
        assert_eq!(l.unrelated_top, None);
    }

    #[test]
    fn cycles_and_self_references_get_distinct_columns() {
        // 0 ↔ 1, 2 → 3 → 4 → 2, 5 refers to itself only, 6 to nothing.
        let edges = [(0, 1), (1, 0), (2, 3), (3, 4), (4, 2), (5, 5)];
        let l = layout(&[(120.0, 80.0); 7], &edges, 80.0);
        assert_sound(&l);
        let b = &l.boxes;
        assert_ne!(b[0].x, b[1].x);
        let xs: BTreeSet<u64> = [2, 3, 4].iter().map(|&v| b[v].x as u64).collect();
        assert_eq!(xs.len(), 3, "a three-cycle spans three columns");
        // A table related to itself stands in the first column; one related
        // to nothing in the row below.
        assert_eq!(b[5].x, MARGIN);
        let top = l.unrelated_top.expect("an unrelated row");
        assert!(b[6].y >= top && (0..6).all(|v| b[v].bottom() < top));
    }

    #[test]
    fn unrelated_boxes_wrap_in_rows_of_their_own() {
        let l = layout(&[(300.0, 50.0); 12], &[], 80.0);
        assert_sound(&l);
        let rows: BTreeSet<u64> = l.boxes.iter().map(|b| b.y as u64).collect();
        assert!(rows.len() > 1, "twelve 300px boxes do not fit one row");
    }

    #[test]
    fn a_wide_layer_is_split_into_columns() {
        // One parent with 60 children: the children's layer is cut.
        let edges: Vec<(usize, usize)> = (1..61).map(|c| (0, c)).collect();
        let l = layout(&[(150.0, 100.0); 61], &edges, 80.0);
        assert_sound(&l);
        let columns: BTreeSet<u64> = l.boxes[1..].iter().map(|b| b.x as u64).collect();
        assert!(columns.len() > 1);
        assert!(l.height < 61.0 * 124.0);
    }

    #[test]
    fn two_hundred_boxes_lay_out_without_overlap() {
        // A generated schema: chains, fan-ins, cycles and unrelated tables.
        let mut seed = 7u64;
        let mut next = |m: u64| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) % m
        };
        let sizes: Vec<(f64, f64)> = (0..200)
            .map(|_| (120.0 + next(200) as f64, 44.0 + 20.0 * next(6) as f64))
            .collect();
        let edges: Vec<(usize, usize)> = (0..260)
            .map(|_| (next(180) as usize, next(180) as usize))
            .collect();
        let l = layout(&sizes, &edges, 120.0);
        assert_sound(&l);
        assert_eq!(l.boxes.len(), 200);
    }

    #[test]
    fn deterministic() {
        let edges = [(0, 1), (2, 1), (1, 3), (3, 0)];
        let a = layout(&[(100.0, 40.0); 5], &edges, 80.0);
        let b = layout(&[(100.0, 40.0); 5], &edges, 80.0);
        assert_eq!(a.boxes, b.boxes);
    }

    proptest! {
        #[test]
        fn random_graphs_lay_out_without_overlap(
            sizes in proptest::collection::vec((40.0f64..400.0, 24.0f64..300.0), 0..60),
            edges in proptest::collection::vec((0usize..60, 0usize..60), 0..120),
        ) {
            let l = layout(&sizes, &edges, 90.0);
            assert_sound(&l);
        }
    }
}
