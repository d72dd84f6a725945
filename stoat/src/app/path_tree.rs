//! Route patterns and the tree that matches request paths against them.
//!
//! Contract:
//! - A pattern is `/` followed by segments separated by `/`. A segment is
//!   either static text, compared byte for byte with the raw (not
//!   percent-decoded) path, or a whole-segment parameter `{name}`, which
//!   matches one non-empty segment. A trailing `/` is significant: `/a/`
//!   and `/a` are different routes.
//! - [`PathTree::find`] gives the endpoint of the best match: a static
//!   segment wins over a parameter at the same position, and the walk backs
//!   up to try the parameter when the static branch leads nowhere (so
//!   `/users/me/posts` reaches `/users/{id}/posts` even when `/users/me`
//!   exists). Parameter values come back as [`Span`]s of the path.
//! - Cost: a pattern without parameters is an exact path. Exact paths are
//!   kept sorted by length, with a table from each length to its run, so a
//!   lookup is one index and a word-wise compare with the (usually one)
//!   path of that length: no hashing, no search, no allocation. Patterns with parameters form a tree walked
//!   segment by segment; its depth is bounded by the longest pattern, not by
//!   the input, and nothing is allocated while walking.

use crate::proto::Span;

/// Most route parameters one pattern may have.
pub const MAX_PARAMS: usize = 8;

/// Why a route pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// The pattern does not start with `/`.
    #[error("route pattern must start with '/'")]
    NoLeadingSlash,
    /// Two `/` in a row (an empty segment before the end).
    #[error("route pattern has an empty segment ('//')")]
    EmptySegment,
    /// A `{` or `}` that does not enclose a whole segment.
    #[error("'{{' and '}}' must enclose a whole segment, as in /users/{{id}}")]
    PartialParam,
    /// `{}`.
    #[error("route parameter has an empty name")]
    EmptyParamName,
    /// A parameter name with a character outside `[A-Za-z0-9_-]`.
    #[error("route parameter name {0:?} may only hold ASCII letters, digits, '_' and '-'")]
    BadParamName(String),
    /// The same parameter name twice.
    #[error("route parameter {0:?} appears twice")]
    DuplicateParam(String),
    /// More than [`MAX_PARAMS`] parameters.
    #[error("route pattern has more than {MAX_PARAMS} parameters")]
    TooManyParams,
    /// A static segment holding a byte no request path can hold there
    /// (`?`, `#`, space or another control character).
    #[error("route pattern holds a character that cannot appear in a path: {0:?}")]
    BadChar(char),
}

/// A parsed route pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    segments: Vec<Segment>,
    /// Parameter names in order of appearance.
    names: Vec<Box<str>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Static(Box<[u8]>),
    Param,
}

impl Pattern {
    /// Parses `/a/{b}/c`.
    pub(crate) fn parse(pattern: &str) -> Result<Pattern, PatternError> {
        let rest = pattern
            .strip_prefix('/')
            .ok_or(PatternError::NoLeadingSlash)?;
        let mut segments = Vec::new();
        let mut names: Vec<Box<str>> = Vec::new();
        let count = rest.split('/').count();
        for (i, seg) in rest.split('/').enumerate() {
            // A trailing slash is an empty last segment: significant, allowed.
            if seg.is_empty() && i + 1 < count {
                return Err(PatternError::EmptySegment);
            }
            if let Some(inner) = seg.strip_prefix('{') {
                let name = inner.strip_suffix('}').ok_or(PatternError::PartialParam)?;
                if name.is_empty() {
                    return Err(PatternError::EmptyParamName);
                }
                if name.contains(['{', '}']) {
                    return Err(PatternError::PartialParam);
                }
                if !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    return Err(PatternError::BadParamName(name.to_owned()));
                }
                if names.iter().any(|n| **n == *name) {
                    return Err(PatternError::DuplicateParam(name.to_owned()));
                }
                if names.len() == MAX_PARAMS {
                    return Err(PatternError::TooManyParams);
                }
                names.push(name.into());
                segments.push(Segment::Param);
            } else {
                if seg.contains(['{', '}']) {
                    return Err(PatternError::PartialParam);
                }
                if let Some(c) = seg
                    .chars()
                    .find(|&c| c == '?' || c == '#' || c == ' ' || c.is_ascii_control())
                {
                    return Err(PatternError::BadChar(c));
                }
                segments.push(Segment::Static(seg.as_bytes().into()));
            }
        }
        Ok(Pattern { segments, names })
    }

    /// The parameter names, in order.
    pub(crate) fn names(&self) -> &[Box<str>] {
        &self.names
    }
}

/// Parameter values captured by a match: spans of the path, in pattern order.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Captures {
    spans: [Span; MAX_PARAMS],
    len: usize,
}

impl Captures {
    /// Captures holding `spans` (at most [`MAX_PARAMS`]).
    pub(crate) fn of(spans: &[Span]) -> Captures {
        let mut caps = Captures::default();
        caps.spans[..spans.len()].copy_from_slice(spans);
        caps.len = spans.len();
        caps
    }

    /// The captured spans.
    #[inline]
    pub(crate) fn spans(&self) -> &[Span] {
        &self.spans[..self.len]
    }
}

/// Maps paths to endpoint ids (dense, from 0, in order of first insertion).
#[derive(Debug, Default)]
pub(crate) struct PathTree {
    /// Patterns without parameters, sorted by (length, bytes).
    exact: Vec<(Box<[u8]>, usize)>,
    /// For each length up to the longest exact path: the range of `exact`
    /// holding the paths of that length.
    by_len: Vec<(u32, u32)>,
    /// Patterns with parameters.
    root: Node,
    /// Endpoints so far.
    len: usize,
}

#[derive(Debug, Default)]
struct Node {
    /// Children by static segment; each segment once.
    statics: Vec<(Box<[u8]>, Node)>,
    /// The child for a parameter segment.
    param: Option<Box<Node>>,
    /// The endpoint of a pattern that ends here.
    endpoint: Option<usize>,
}

impl PathTree {
    /// The endpoint id of `pattern`: the existing one when a pattern of the
    /// same shape (same static segments, parameters at the same places,
    /// whatever their names) was inserted before, else a new one.
    pub(crate) fn insert(&mut self, pattern: &Pattern) -> usize {
        if pattern.names.is_empty() {
            let mut path = Vec::new();
            for seg in &pattern.segments {
                if let Segment::Static(s) = seg {
                    path.push(b'/');
                    path.extend_from_slice(s);
                }
            }
            return match self.exact.binary_search_by(|(p, _)| exact_order(p, &path)) {
                Ok(i) => self.exact[i].1,
                Err(i) => {
                    self.len += 1;
                    self.exact.insert(i, (path.into(), self.len - 1));
                    self.index_lengths();
                    self.len - 1
                }
            };
        }
        let PathTree { root, len, .. } = self;
        let mut node = root;
        for seg in &pattern.segments {
            node = match seg {
                Segment::Static(s) => {
                    let at = match node.statics.iter().position(|(t, _)| t == s) {
                        Some(at) => at,
                        None => {
                            node.statics.push((s.clone(), Node::default()));
                            node.statics.len() - 1
                        }
                    };
                    &mut node.statics[at].1
                }
                Segment::Param => node.param.get_or_insert_with(Box::default),
            };
        }
        *node.endpoint.get_or_insert_with(|| {
            *len += 1;
            *len - 1
        })
    }

    /// The endpoint matching `path`, with its parameter values in `caps`.
    #[inline]
    pub(crate) fn find(&self, path: &[u8], caps: &mut Captures) -> Option<usize> {
        match self.find_exact(path) {
            Some(id) => {
                caps.len = 0;
                Some(id)
            }
            None => self.find_pattern(path, caps),
        }
    }

    /// Rebuilds `by_len` after `exact` changed (at build time only).
    fn index_lengths(&mut self) {
        let longest = self.exact.last().map_or(0, |(p, _)| p.len());
        self.by_len = vec![(0, 0); longest + 1];
        for (i, (p, _)) in self.exact.iter().enumerate() {
            let run = &mut self.by_len[p.len()];
            if run.0 == run.1 {
                run.0 = i as u32;
            }
            run.1 = i as u32 + 1;
        }
    }

    /// The endpoint of the pattern without parameters equal to `path`.
    #[inline(always)]
    pub(crate) fn find_exact(&self, path: &[u8]) -> Option<usize> {
        let &(start, end) = self.by_len.get(path.len())?;
        self.exact
            .get(start as usize..end as usize)?
            .iter()
            .find(|(p, _)| same_bytes(p, path))
            .map(|&(_, id)| id)
    }

    /// The endpoint of the best pattern with parameters matching `path`.
    #[inline]
    pub(crate) fn find_pattern(&self, path: &[u8], caps: &mut Captures) -> Option<usize> {
        caps.len = 0;
        if path.first() != Some(&b'/') || self.root.is_empty() {
            return None;
        }
        walk(&self.root, path, 1, caps)
    }
}

impl Node {
    fn is_empty(&self) -> bool {
        self.statics.is_empty() && self.param.is_none()
    }
}

/// Orders exact paths by length first: a lookup mostly compares lengths.
#[inline]
fn exact_order(p: &[u8], path: &[u8]) -> std::cmp::Ordering {
    p.len().cmp(&path.len()).then_with(|| p.cmp(path))
}

/// Matches the segment of `path` starting at `start` (just after a `/`)
/// and what follows against `node`'s children.
fn walk(node: &Node, path: &[u8], start: usize, caps: &mut Captures) -> Option<usize> {
    let (end, next) = match memchr::memchr(b'/', &path[start..]) {
        Some(i) => (start + i, Some(start + i + 1)),
        None => (path.len(), None),
    };
    let seg = &path[start..end];
    if let Some((_, child)) = node
        .statics
        .iter()
        .find(|(s, _)| s.len() == seg.len() && same_bytes(s, seg))
    {
        if let Some(id) = descend(child, path, next, caps) {
            return Some(id);
        }
    }
    // A parameter matches one non-empty segment. A pattern has at most
    // MAX_PARAMS parameters, so the tree is never deeper in parameters.
    if let Some(child) = &node.param {
        if !seg.is_empty() && caps.len < MAX_PARAMS {
            caps.spans[caps.len] = Span {
                start: start as u32,
                end: end as u32,
            };
            caps.len += 1;
            if let Some(id) = descend(child, path, next, caps) {
                return Some(id);
            }
            caps.len -= 1;
        }
    }
    None
}

/// Whether two slices of the same length hold the same bytes. Paths are
/// short: comparing them a word at a time beats a call to `memcmp`.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    debug_assert_eq!(a.len(), b.len());
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let word = |s: &[u8], at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[at..at + 8]);
        u64::from_ne_bytes(w)
    };
    if n < 8 {
        let half = |s: &[u8], at: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&s[at..at + 4]);
            u32::from_ne_bytes(w)
        };
        return if n >= 4 {
            half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4)
        } else {
            a == b
        };
    }
    // Whole words, then the last word (overlapping the one before).
    let mut at = 0;
    while at + 8 < n {
        if word(a, at) != word(b, at) {
            return false;
        }
        at += 8;
    }
    word(a, n - 8) == word(b, n - 8)
}

#[inline]
fn descend(node: &Node, path: &[u8], next: Option<usize>, caps: &mut Captures) -> Option<usize> {
    match next {
        None => node.endpoint,
        Some(start) => walk(node, path, start, caps),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(patterns: &[&str]) -> PathTree {
        let mut t = PathTree::default();
        for (i, p) in patterns.iter().enumerate() {
            assert_eq!(t.insert(&Pattern::parse(p).unwrap()), i, "{p}");
        }
        t
    }

    /// The matched pattern's index and its parameter values.
    fn find<'p>(t: &PathTree, path: &'p str) -> Option<(usize, Vec<&'p str>)> {
        let mut caps = Captures::default();
        let id = t.find(path.as_bytes(), &mut caps)?;
        let values = caps
            .spans()
            .iter()
            .map(|s| &path[s.start as usize..s.end as usize])
            .collect();
        Some((id, values))
    }

    #[test]
    fn exact_paths() {
        let t = tree(&["/", "/plaintext", "/json", "/a/b/c", "/a/b/c/", "/x"]);
        assert_eq!(find(&t, "/"), Some((0, vec![])));
        assert_eq!(find(&t, "/plaintext"), Some((1, vec![])));
        assert_eq!(find(&t, "/json"), Some((2, vec![])));
        assert_eq!(find(&t, "/a/b/c"), Some((3, vec![])));
        assert_eq!(find(&t, "/a/b/c/"), Some((4, vec![])));
        assert_eq!(find(&t, "/x"), Some((5, vec![])));
        for miss in [
            "",
            "/y",
            "/plaintext/",
            "/Plaintext",
            "/a/b",
            "//",
            "plaintext",
            "*",
        ] {
            assert_eq!(find(&t, miss), None, "{miss}");
        }
    }

    #[test]
    fn params() {
        let t = tree(&["/v1/kv/{key}", "/users/{id}/posts/{post}", "/{a}"]);
        assert_eq!(find(&t, "/v1/kv/abc"), Some((0, vec!["abc"])));
        assert_eq!(find(&t, "/users/7/posts/42"), Some((1, vec!["7", "42"])));
        assert_eq!(find(&t, "/x%20y"), Some((2, vec!["x%20y"])));
        // A parameter is one non-empty segment.
        assert_eq!(find(&t, "/v1/kv/"), None);
        assert_eq!(find(&t, "/v1/kv/a/b"), None);
        assert_eq!(find(&t, "/users//posts/1"), None);
        assert_eq!(find(&t, "/"), None);
        assert_eq!(find(&t, "/a/"), None);
    }

    #[test]
    fn static_wins_over_param_and_backtracks() {
        let t = tree(&[
            "/users/{id}",
            "/users/me",
            "/users/{id}/posts",
            "/users/me/settings",
            "/{a}/{b}/c",
            "/x/{b}/d",
        ]);
        assert_eq!(find(&t, "/users/me"), Some((1, vec![])));
        assert_eq!(find(&t, "/users/you"), Some((0, vec!["you"])));
        assert_eq!(find(&t, "/users/me/settings"), Some((3, vec![])));
        // The static `me` branch has no `posts`: back up to `{id}`.
        assert_eq!(find(&t, "/users/me/posts"), Some((2, vec!["me"])));
        assert_eq!(find(&t, "/x/y/d"), Some((5, vec!["y"])));
        // `/x/{b}` leads nowhere for `c`: back up to `{a}`, captures reset.
        assert_eq!(find(&t, "/x/y/c"), Some((4, vec!["x", "y"])));
    }

    #[test]
    fn trailing_slash_is_significant() {
        let t = tree(&["/a/{x}", "/a/{x}/"]);
        assert_eq!(find(&t, "/a/1"), Some((0, vec!["1"])));
        assert_eq!(find(&t, "/a/1/"), Some((1, vec!["1"])));
        assert_eq!(find(&t, "/a/1//"), None);
    }

    #[test]
    fn same_shape_is_same_endpoint() {
        let mut t = PathTree::default();
        let a = t.insert(&Pattern::parse("/u/{id}").unwrap());
        let b = t.insert(&Pattern::parse("/u/{other}").unwrap());
        let c = t.insert(&Pattern::parse("/plain").unwrap());
        let d = t.insert(&Pattern::parse("/plain").unwrap());
        assert_eq!((a, b, c, d), (0, 0, 1, 1));
        assert_eq!(t.len, 2);
    }

    #[test]
    fn many_exact_paths() {
        let paths: Vec<String> = (0..200).map(|i| format!("/r{}", i * 7919 % 1000)).collect();
        let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        let t = tree(&refs);
        for (i, p) in refs.iter().enumerate() {
            assert_eq!(find(&t, p), Some((i, vec![])));
        }
        assert_eq!(find(&t, "/r1001"), None);
    }

    #[test]
    fn same_bytes_at_every_length() {
        let a: Vec<u8> = (0..40).collect();
        for n in 0..40 {
            assert!(same_bytes(&a[..n], &a[..n]), "{n}");
            for i in 0..n {
                let mut b = a[..n].to_vec();
                b[i] ^= 0x20;
                assert!(!same_bytes(&a[..n], &b), "{n} {i}");
            }
        }
    }

    #[test]
    fn pattern_errors() {
        use PatternError::*;
        let cases: &[(&str, PatternError)] = &[
            ("", NoLeadingSlash),
            ("a/b", NoLeadingSlash),
            ("/a//b", EmptySegment),
            ("//", EmptySegment),
            ("/a/{id", PartialParam),
            ("/a/id}", PartialParam),
            ("/a/x{id}", PartialParam),
            ("/a/{id}x", PartialParam),
            ("/a/{{id}}", PartialParam),
            ("/a/{}", EmptyParamName),
            ("/a/{ id }", BadParamName(" id ".into())),
            ("/{a}/{a}", DuplicateParam("a".into())),
            ("/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}", TooManyParams),
            ("/a?b", BadChar('?')),
            ("/a#b", BadChar('#')),
            ("/a b", BadChar(' ')),
            ("/a\nb", BadChar('\n')),
        ];
        for (p, e) in cases {
            assert_eq!(Pattern::parse(p).as_ref(), Err(e), "{p:?}");
        }
        for ok in [
            "/",
            "/a/",
            "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}",
            "/a-b_c/{x_1-y}",
        ] {
            Pattern::parse(ok).unwrap();
        }
        assert_eq!(
            Pattern::parse("/u/{id}/p/{post}").unwrap().names(),
            ["id".into(), "post".into()]
        );
    }
}
