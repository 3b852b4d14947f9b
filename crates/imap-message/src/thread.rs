//! THREAD (RFC 5256): ORDEREDSUBJECT and REFERENCES.
//!
//! Everything works on a flat arena without recursion, so very long reply chains cannot
//! overflow the stack; the nesting of the produced [`Thread`] values is capped as well.

use std::{collections::HashMap, num::NonZeroU32};

use imap_codec::imap_types::{
    core::{Vec1, Vec2},
    extensions::thread::{Thread, ThreadingAlgorithm},
};

use crate::sort::{SortMessage, sent_date};

/// Deepest nesting of parenthesized answer lists in a produced thread; deeper subtrees are
/// flattened into a chain (all messages stay in the answer).
const MAX_THREAD_NESTING: usize = 200;
/// Longest walk up the thread tree when checking for a loop (see `is_ancestor_or_self`).
const MAX_ANCESTOR_WALK: usize = 1000;

/// Threads messages by an algorithm; `None` for an algorithm we do not implement. `uid`
/// selects UIDs (UID THREAD) instead of sequence numbers in the result.
pub fn thread<M: SortMessage>(
    algorithm: &ThreadingAlgorithm<'_>,
    items: &[M],
    uid: bool,
) -> Option<Vec<Thread>> {
    match algorithm {
        ThreadingAlgorithm::OrderedSubject => Some(thread_orderedsubject(items, uid)),
        ThreadingAlgorithm::References => Some(thread_references(items, uid)),
        ThreadingAlgorithm::Other(_) => None,
    }
}

fn id_of<M: SortMessage>(m: &M, uid: bool) -> Option<NonZeroU32> {
    NonZeroU32::new(if uid { m.uid() } else { m.seq() })
}

fn leaf(id: NonZeroU32) -> Thread {
    Thread::Members {
        prefix: Vec1::from(id),
        answers: None,
    }
}

/// THREAD=ORDEREDSUBJECT: groups by base subject; the oldest message of a group is the
/// parent of all others; threads ordered by their first message's sent date.
pub fn thread_orderedsubject<M: SortMessage>(items: &[M], uid: bool) -> Vec<Thread> {
    let mut idx: Vec<usize> = (0..items.len())
        .filter(|&i| items.get(i).and_then(|m| id_of(m, uid)).is_some())
        .collect();
    let key = |i: usize| {
        items
            .get(i)
            .map(|m| (m.sort_fields().subject.as_str(), sent_date(m), m.seq()))
    };
    idx.sort_by(|&a, &b| key(a).cmp(&key(b)));
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for i in idx {
        let subject = items.get(i).map(|m| m.sort_fields().subject.as_str());
        let same = groups
            .last()
            .and_then(|g| g.first())
            .and_then(|&f| items.get(f))
            .map(|m| m.sort_fields().subject.as_str())
            == subject;
        match groups.last_mut() {
            Some(g) if same => g.push(i),
            _ => groups.push(vec![i]),
        }
    }
    let first_key = |g: &Vec<usize>| {
        g.first()
            .and_then(|&f| items.get(f))
            .map(|m| (sent_date(m), m.seq()))
    };
    groups.sort_by_key(first_key);
    groups
        .into_iter()
        .filter_map(|g| {
            let ids: Vec<NonZeroU32> = g
                .iter()
                .filter_map(|&i| items.get(i).and_then(|m| id_of(m, uid)))
                .collect();
            match ids.as_slice() {
                [] => None,
                [a] => Some(leaf(*a)),
                [a, b] => Some(Thread::Members {
                    prefix: Vec1::try_from(vec![*a, *b]).ok()?,
                    answers: None,
                }),
                [a, rest @ ..] => Some(Thread::Members {
                    prefix: Vec1::from(*a),
                    answers: Vec2::try_from(rest.iter().map(|&x| leaf(x)).collect::<Vec<_>>()).ok(),
                }),
            }
        })
        .collect()
}

#[derive(Debug, Clone, Default)]
struct Node {
    /// Index into the items; None for a dummy.
    msg: Option<usize>,
    parent: Option<usize>,
    children: Vec<usize>,
    /// Number of children, kept while `children` is not built yet (step 1).
    nchildren: usize,
    /// Which `link` made the current parent link (to tell stale entries in `pending`).
    link_no: usize,
}

struct Forest<'a, M> {
    items: &'a [M],
    nodes: Vec<Node>,
    /// Step 1 records links here (parent, child, link number) instead of in `children`, so
    /// that `unlink` is O(1); [`Self::settle`] builds the child lists once afterwards.
    /// (Removing a child from a long list on each unlink was quadratic.)
    pending: Option<Vec<(usize, usize, usize)>>,
}

impl<M: SortMessage> Forest<'_, M> {
    fn new_node(&mut self, msg: Option<usize>) -> usize {
        self.nodes.push(Node {
            msg,
            ..Node::default()
        });
        self.nodes.len() - 1
    }

    fn node(&self, n: usize) -> Option<&Node> {
        self.nodes.get(n)
    }

    fn is_dummy(&self, n: usize) -> bool {
        self.node(n).is_none_or(|x| x.msg.is_none())
    }

    fn parent(&self, n: usize) -> Option<usize> {
        self.node(n).and_then(|x| x.parent)
    }

    /// Whether `a` is `b` or one of its ancestors.
    ///
    /// Callers use it to refuse links that would make a loop. A node without children is no
    /// one's ancestor (the common case: a fresh id from References), and the walk up from `b`
    /// stops after [`MAX_ANCESTOR_WALK`] steps, answering "yes" (so the link is refused):
    /// otherwise References chains that grow with every message make THREAD quadratic.
    fn is_ancestor_or_self(&self, a: usize, b: usize) -> bool {
        if a == b {
            return true;
        }
        if self.node(a).is_none_or(|x| x.nchildren == 0) {
            return false;
        }
        let mut cur = self.parent(b);
        let mut steps = 0;
        while let Some(c) = cur {
            if c == a {
                return true;
            }
            steps += 1;
            if steps > MAX_ANCESTOR_WALK {
                return true; // deeper than any thread we show; refuse to link
            }
            cur = self.parent(c);
        }
        false
    }

    fn link(&mut self, parent: usize, child: usize) {
        let link_no = self.pending.as_ref().map_or(0, Vec::len);
        if let Some(c) = self.nodes.get_mut(child) {
            c.parent = Some(parent);
            c.link_no = link_no;
        }
        if let Some(p) = self.nodes.get_mut(parent) {
            p.nchildren += 1;
        }
        match &mut self.pending {
            Some(pending) => pending.push((parent, child, link_no)),
            None => {
                if let Some(p) = self.nodes.get_mut(parent) {
                    p.children.push(child);
                }
            }
        }
    }

    /// Only while links are pending (step 1).
    fn unlink(&mut self, child: usize) {
        let Some(parent) = self.parent(child) else {
            return;
        };
        if let Some(p) = self.nodes.get_mut(parent) {
            p.nchildren = p.nchildren.saturating_sub(1);
        }
        if let Some(c) = self.nodes.get_mut(child) {
            c.parent = None;
        }
    }

    /// Builds the child lists from the pending links still in force, in link order.
    fn settle(&mut self) {
        for (parent, child, link_no) in self.pending.take().unwrap_or_default() {
            let live = self
                .node(child)
                .is_some_and(|c| c.parent == Some(parent) && c.link_no == link_no);
            if live && let Some(p) = self.nodes.get_mut(parent) {
                p.children.push(child);
            }
        }
    }

    /// The first real message at or below `n` following first children.
    fn first_msg(&self, n: usize) -> Option<usize> {
        let mut cur = n;
        for _ in 0..=self.nodes.len() {
            let node = self.node(cur)?;
            if let Some(m) = node.msg {
                return Some(m);
            }
            cur = *node.children.first()?;
        }
        None
    }

    fn date_key(&self, n: usize) -> (i64, u32) {
        self.first_msg(n)
            .and_then(|m| self.items.get(m))
            .map_or((i64::MAX, u32::MAX), |m| (sent_date(m), m.seq()))
    }

    fn subject(&self, n: usize) -> &str {
        self.first_msg(n)
            .and_then(|m| self.items.get(m))
            .map_or("", |m| m.sort_fields().subject.as_str())
    }

    fn is_reply(&self, n: usize) -> bool {
        self.node(n)
            .and_then(|x| x.msg)
            .and_then(|m| self.items.get(m))
            .is_some_and(|m| m.sort_fields().subject_is_reply)
    }

    /// Nodes below `roots` in pre-order.
    fn preorder(&self, roots: &[usize]) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.nodes.len());
        let mut stack: Vec<usize> = roots.iter().rev().copied().collect();
        while let Some(n) = stack.pop() {
            if out.len() > self.nodes.len() {
                break; // defensive: a cycle
            }
            out.push(n);
            if let Some(node) = self.node(n) {
                stack.extend(node.children.iter().rev());
            }
        }
        out
    }

    /// Sorts every set of siblings (and the roots) by sent date; dummies by their first child.
    fn sort_all(&mut self, roots: &mut [usize]) {
        let order = self.preorder(roots);
        for &n in order.iter().rev() {
            let mut children = self
                .nodes
                .get_mut(n)
                .map(|x| std::mem::take(&mut x.children))
                .unwrap_or_default();
            children.sort_by_key(|&c| self.date_key(c));
            if let Some(x) = self.nodes.get_mut(n) {
                x.children = children;
            }
        }
        roots.sort_by_key(|&r| self.date_key(r));
    }
}

/// THREAD=REFERENCES (RFC 5256 §3).
pub fn thread_references<M: SortMessage>(items: &[M], uid: bool) -> Vec<Thread> {
    let mut order: Vec<usize> = (0..items.len())
        .filter(|&i| items.get(i).and_then(|m| id_of(m, uid)).is_some())
        .collect();
    order.sort_by_key(|&i| items.get(i).map(SortMessage::seq));
    let mut f = Forest {
        items,
        nodes: Vec::new(),
        pending: Some(Vec::new()),
    };
    let mut table: HashMap<String, usize> = HashMap::new();

    // (1) link messages by Message-ID / References / In-Reply-To
    for &i in &order {
        let Some(fields) = items.get(i).map(SortMessage::sort_fields) else {
            continue;
        };
        let me = match &fields.message_id {
            Some(id) => match table.get(id).copied() {
                Some(n) if f.is_dummy(n) => {
                    if let Some(x) = f.nodes.get_mut(n) {
                        x.msg = Some(i);
                    }
                    n
                }
                // a duplicate Message-ID counts as none
                Some(_) => f.new_node(Some(i)),
                None => {
                    let n = f.new_node(Some(i));
                    table.insert(id.clone(), n);
                    n
                }
            },
            None => f.new_node(Some(i)),
        };
        let refs: Vec<usize> = fields
            .references
            .iter()
            .map(|r| match table.get(r) {
                Some(&n) => n,
                None => {
                    let n = f.new_node(None);
                    table.insert(r.clone(), n);
                    n
                }
            })
            .collect();
        for w in refs.windows(2) {
            if let [a, b] = *w
                && f.parent(b).is_none()
                && !f.is_ancestor_or_self(b, a)
            {
                f.link(a, b);
            }
        }
        // (1B) the last reference, "or NIL if there are no references", becomes the parent;
        // a parent that an earlier message's References gave is broken off first
        match refs.last() {
            Some(&last) => {
                // a fresh node has no children, so linking it cannot make a loop
                let fresh = f.node(me).is_some_and(|x| x.nchildren == 0);
                if last != me && (fresh || !f.is_ancestor_or_self(me, last)) {
                    f.unlink(me);
                    f.link(last, me);
                }
            }
            None => f.unlink(me),
        }
    }

    f.settle();

    // (2) the roots
    let roots: Vec<usize> = (0..f.nodes.len())
        .filter(|&n| f.parent(n).is_none())
        .collect();

    // (3) prune dummies, children first
    let order = f.preorder(&roots);
    for &n in order.iter().rev() {
        let children = f
            .nodes
            .get_mut(n)
            .map(|x| std::mem::take(&mut x.children))
            .unwrap_or_default();
        let mut kept = Vec::with_capacity(children.len());
        for c in children {
            if f.is_dummy(c) {
                let grand = f
                    .nodes
                    .get_mut(c)
                    .map(|x| std::mem::take(&mut x.children))
                    .unwrap_or_default();
                for g in grand {
                    if let Some(x) = f.nodes.get_mut(g) {
                        x.parent = Some(n);
                    }
                    kept.push(g);
                }
            } else {
                kept.push(c);
            }
        }
        if let Some(x) = f.nodes.get_mut(n) {
            x.children = kept;
        }
    }
    let mut top: Vec<usize> = Vec::with_capacity(roots.len());
    for r in roots {
        if !f.is_dummy(r) {
            top.push(r);
            continue;
        }
        let children = f.node(r).map(|x| x.children.clone()).unwrap_or_default();
        match children.as_slice() {
            [] => {}
            [only] => {
                if let Some(x) = f.nodes.get_mut(*only) {
                    x.parent = None;
                }
                top.push(*only);
            }
            _ => top.push(r),
        }
    }

    // (4) sort the roots (and dummies' children) by date
    f.sort_all(&mut top);

    // (5) gather roots with the same base subject
    let mut subjects: HashMap<String, usize> = HashMap::new();
    for &r in &top {
        let s = f.subject(r);
        if s.is_empty() {
            continue;
        }
        let replace = match subjects.get(s) {
            None => true,
            Some(&t) => {
                (f.is_dummy(r) && !f.is_dummy(t))
                    || (f.is_reply(t) && !f.is_dummy(r) && !f.is_reply(r))
            }
        };
        if replace {
            subjects.insert(s.to_string(), r);
        }
    }
    let mut slots: Vec<Option<usize>> = top.iter().copied().map(Some).collect();
    let mut slot_of: HashMap<usize, usize> = top.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    for idx in 0..slots.len() {
        let Some(Some(r)) = slots.get(idx).copied() else {
            continue;
        };
        let s = f.subject(r).to_string();
        if s.is_empty() {
            continue;
        }
        let Some(&t) = subjects.get(&s) else {
            continue;
        };
        if t == r {
            continue;
        }
        let (rd, td) = (f.is_dummy(r), f.is_dummy(t));
        if rd && td {
            let moved = f
                .nodes
                .get_mut(r)
                .map(|x| std::mem::take(&mut x.children))
                .unwrap_or_default();
            for c in moved {
                f.link(t, c);
            }
            if let Some(s) = slots.get_mut(idx) {
                *s = None;
            }
        } else if td || (!rd && f.is_reply(r) && !f.is_reply(t)) {
            f.link(t, r);
            if let Some(s) = slots.get_mut(idx) {
                *s = None;
            }
        } else if rd {
            // (cannot happen: a dummy always wins the subject table) keep it consistent anyway
            f.link(r, t);
            if let Some(ts) = slot_of.get(&t).copied()
                && let Some(s) = slots.get_mut(ts)
            {
                *s = None;
            }
            subjects.insert(s, r);
        } else {
            let d = f.new_node(None);
            f.link(d, t);
            f.link(d, r);
            if let Some(ts) = slot_of.get(&t).copied() {
                if let Some(s) = slots.get_mut(ts) {
                    *s = Some(d);
                }
                slot_of.insert(d, ts);
            }
            if let Some(s) = slots.get_mut(idx) {
                *s = None;
            }
            subjects.insert(s, d);
        }
    }
    let mut top: Vec<usize> = slots.into_iter().flatten().collect();

    // (6) sort all siblings by date
    f.sort_all(&mut top);

    to_threads(&f, &top, uid)
}

/// The answer being built for one node (children before parents).
enum Rep {
    Empty,
    /// A chain of messages (prefix kept reversed while it grows) with optional branches.
    Chain {
        rev_prefix: Vec<NonZeroU32>,
        answers: Option<Vec<Thread>>,
        depth: usize,
    },
    /// A dummy with several children.
    Nested {
        answers: Vec<Thread>,
        depth: usize,
    },
}

impl Rep {
    fn depth(&self) -> usize {
        match self {
            Self::Empty => 0,
            Self::Chain { depth, .. } | Self::Nested { depth, .. } => *depth,
        }
    }

    fn into_thread(self) -> Option<Thread> {
        match self {
            Self::Empty => None,
            Self::Chain {
                mut rev_prefix,
                answers,
                ..
            } => {
                rev_prefix.reverse();
                let mut answers = answers.unwrap_or_default();
                if answers.len() == 1 {
                    // a single answer continues the chain
                    match answers.pop() {
                        Some(Thread::Members {
                            prefix,
                            answers: more,
                        }) => {
                            rev_prefix.extend(prefix.into_inner());
                            answers = more.map(Vec2::into_inner).unwrap_or_default();
                        }
                        Some(Thread::Nested { answers: more }) => answers = more.into_inner(),
                        None => {}
                    }
                }
                Some(Thread::Members {
                    prefix: Vec1::try_from(rev_prefix).ok()?,
                    answers: Vec2::try_from(answers).ok(),
                })
            }
            Self::Nested { mut answers, .. } => match answers.len() {
                0 => None,
                1 => answers.pop(),
                _ => Vec2::try_from(answers)
                    .ok()
                    .map(|answers| Thread::Nested { answers }),
            },
        }
    }
}

/// All message ids of a thread in depth-first order.
fn flatten(thread: Thread, out: &mut Vec<NonZeroU32>) {
    let mut stack = vec![thread];
    while let Some(t) = stack.pop() {
        match t {
            Thread::Members { prefix, answers } => {
                out.extend(prefix.into_inner());
                if let Some(a) = answers {
                    stack.extend(a.into_inner().into_iter().rev());
                }
            }
            Thread::Nested { answers } => stack.extend(answers.into_inner().into_iter().rev()),
        }
    }
}

fn to_threads<M: SortMessage>(f: &Forest<'_, M>, top: &[usize], uid: bool) -> Vec<Thread> {
    let order = f.preorder(top);
    let mut reps: HashMap<usize, Rep> = HashMap::with_capacity(order.len());
    for &n in order.iter().rev() {
        let Some(node) = f.node(n) else { continue };
        let mut child_reps: Vec<Rep> = node
            .children
            .iter()
            .filter_map(|c| reps.remove(c))
            .filter(|r| !matches!(r, Rep::Empty))
            .collect();
        let id = node
            .msg
            .and_then(|m| f.items.get(m))
            .and_then(|m| id_of(m, uid));
        let rep = match (id, child_reps.len()) {
            (None, 0) => Rep::Empty,
            (None, 1) => child_reps.pop().unwrap_or(Rep::Empty),
            (None, _) => branch(child_reps, None),
            (Some(id), 0) => Rep::Chain {
                rev_prefix: vec![id],
                answers: None,
                depth: 0,
            },
            (Some(id), 1) => match child_reps.pop() {
                Some(Rep::Chain {
                    mut rev_prefix,
                    answers,
                    depth,
                }) => {
                    rev_prefix.push(id);
                    Rep::Chain {
                        rev_prefix,
                        answers,
                        depth,
                    }
                }
                Some(Rep::Nested { answers, depth }) => Rep::Chain {
                    rev_prefix: vec![id],
                    answers: Some(answers),
                    depth,
                },
                _ => Rep::Chain {
                    rev_prefix: vec![id],
                    answers: None,
                    depth: 0,
                },
            },
            (Some(id), _) => branch(child_reps, Some(id)),
        };
        reps.insert(n, rep);
    }
    top.iter()
        .filter_map(|t| reps.remove(t))
        .filter_map(Rep::into_thread)
        .collect()
}

/// A node with several answers; flattened when it would nest too deeply.
fn branch(children: Vec<Rep>, id: Option<NonZeroU32>) -> Rep {
    let depth = 1 + children.iter().map(Rep::depth).max().unwrap_or(0);
    let answers: Vec<Thread> = children.into_iter().filter_map(Rep::into_thread).collect();
    if depth > MAX_THREAD_NESTING {
        let mut ids: Vec<NonZeroU32> = id.into_iter().collect();
        for a in answers {
            flatten(a, &mut ids);
        }
        ids.reverse();
        return Rep::Chain {
            rev_prefix: ids,
            answers: None,
            depth: 0,
        };
    }
    match id {
        Some(id) => Rep::Chain {
            rev_prefix: vec![id],
            answers: Some(answers),
            depth,
        },
        None => Rep::Nested { answers, depth },
    }
}
