//! Route selection of API Gateway HTTP APIs: parsing route keys (`GET /items/{id}`,
//! `ANY /{proxy+}`, `$default`) and picking the route a request runs, with its path
//! parameters, by AWS's precedence.
//!
//! AWS's rule: the most specific match wins. Paths are compared segment by segment from the
//! left: a literal segment beats a path variable, which beats a greedy variable (`{proxy+}`);
//! for the same path, a route of the request's own method beats `ANY`; `$default` catches what
//! nothing else matched.
//!
//! For: the choice alone. Not for: stages (the caller strips a named stage's prefix first),
//! integrations or payloads.

use std::collections::BTreeMap;

/// Why a route key is refused (rendered as AWS's `BadRequestException` message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteKeyError {
    #[error("Invalid route key: {key}. A route key is $default or an HTTP method, a space and a path starting with /")]
    Shape { key: String },
    #[error("Invalid route key: {key}. Unsupported method {method}")]
    Method { key: String, method: String },
    #[error("Invalid route key: {key}. {detail}")]
    Path { key: String, detail: &'static str },
}

/// The methods an HTTP API route may name (`ANY` matches every method).
const METHODS: &[&str] = &[
    "ANY", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT",
];

/// One segment of a route's path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `{name}`: exactly one segment.
    Variable(String),
    /// `{name+}`: one or more segments, last in the path.
    Greedy(String),
}

impl Segment {
    /// Higher is more specific.
    fn rank(&self) -> u8 {
        match self {
            Segment::Literal(_) => 2,
            Segment::Variable(_) => 1,
            Segment::Greedy(_) => 0,
        }
    }
}

/// A parsed route key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteKey {
    /// As written (`GET /items/{id}`), reported to functions as `routeKey`.
    text: String,
    /// `None` for `$default`.
    route: Option<(Option<String>, Vec<Segment>)>,
}

impl RouteKey {
    /// Parses `$default` or `METHOD /path`, where `METHOD` is `ANY` or an HTTP method and the
    /// path's segments are literals, `{name}` variables, or a final greedy `{name+}`.
    pub fn parse(key: &str) -> Result<RouteKey, RouteKeyError> {
        if key == "$default" {
            return Ok(RouteKey {
                text: key.to_owned(),
                route: None,
            });
        }
        let shape = || RouteKeyError::Shape {
            key: key.to_owned(),
        };
        let (method, path) = key.split_once(' ').ok_or_else(shape)?;
        if !path.starts_with('/') || path.contains(' ') {
            return Err(shape());
        }
        if !METHODS.contains(&method) {
            return Err(RouteKeyError::Method {
                key: key.to_owned(),
                method: method.to_owned(),
            });
        }
        let path_error = |detail| RouteKeyError::Path {
            key: key.to_owned(),
            detail,
        };
        let mut segments = Vec::new();
        let raw: Vec<&str> = path[1..].split('/').collect();
        let mut names = std::collections::BTreeSet::new();
        for (i, part) in raw.iter().enumerate() {
            if part.is_empty() {
                if raw.len() == 1 {
                    break; // the root path "/"
                }
                return Err(path_error("Empty path segments are not allowed"));
            }
            let segment = match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(name) => {
                    let (name, greedy) = match name.strip_suffix('+') {
                        Some(n) => (n, true),
                        None => (name, false),
                    };
                    if name.is_empty()
                        || !name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                    {
                        return Err(path_error("Invalid path variable name"));
                    }
                    if !names.insert(name.to_owned()) {
                        return Err(path_error("A path variable may appear only once"));
                    }
                    if greedy {
                        if i + 1 != raw.len() {
                            return Err(path_error("A greedy path variable must be last"));
                        }
                        Segment::Greedy(name.to_owned())
                    } else {
                        Segment::Variable(name.to_owned())
                    }
                }
                None if part.contains('{') || part.contains('}') => {
                    return Err(path_error("A path variable must be a whole segment"));
                }
                None => Segment::Literal((*part).to_owned()),
            };
            segments.push(segment);
        }
        let method = (method != "ANY").then(|| method.to_owned());
        Ok(RouteKey {
            text: key.to_owned(),
            route: Some((method, segments)),
        })
    }

    /// The key as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether this is `$default`.
    pub fn is_default(&self) -> bool {
        self.route.is_none()
    }

    /// The path parameters if the route matches `method` and the path's `segments`.
    fn matches(&self, method: &str, segments: &[&str]) -> Option<BTreeMap<String, String>> {
        let (route_method, pattern) = self.route.as_ref()?;
        if route_method.as_deref().is_some_and(|m| m != method) {
            return None;
        }
        let mut params = BTreeMap::new();
        let mut i = 0;
        for segment in pattern {
            match segment {
                Segment::Literal(lit) => {
                    if segments.get(i) != Some(&lit.as_str()) {
                        return None;
                    }
                    i += 1;
                }
                Segment::Variable(name) => {
                    let value = segments.get(i).filter(|s| !s.is_empty())?;
                    params.insert(name.clone(), (*value).to_owned());
                    i += 1;
                }
                Segment::Greedy(name) => {
                    let rest = segments.get(i..).filter(|r| !r.is_empty())?.join("/");
                    if rest.is_empty() {
                        return None;
                    }
                    params.insert(name.clone(), rest);
                    i = segments.len();
                }
            }
        }
        (i == segments.len()).then_some(params)
    }

    /// Orders two routes that both match: segment ranks left to right, then more segments,
    /// then a named method over `ANY`.
    fn specificity(&self) -> (Vec<u8>, usize, bool) {
        match &self.route {
            None => (Vec::new(), 0, false),
            Some((method, segments)) => (
                segments.iter().map(Segment::rank).collect(),
                segments.len(),
                method.is_some(),
            ),
        }
    }
}

/// The route a request selected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch<'a, T> {
    pub route_key: &'a RouteKey,
    pub value: &'a T,
    /// `{name}` and `{name+}` values as they appear in the path (not percent-decoded).
    pub path_parameters: BTreeMap<String, String>,
}

/// The routes of one API, each with what it leads to (an integration, say).
#[derive(Debug, Clone)]
pub struct RouteTable<T> {
    routes: Vec<(RouteKey, T)>,
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        Self { routes: Vec::new() }
    }
}

impl<T> RouteTable<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a route; a key already present is replaced.
    pub fn insert(&mut self, key: RouteKey, value: T) {
        self.routes.retain(|(k, _)| k.text != key.text);
        self.routes.push((key, value));
    }

    /// Picks the route for `method` and `path` (the path after any stage prefix, starting
    /// with `/`), or `None` (AWS answers 404 `{"message":"Not Found"}`).
    pub fn select(&self, method: &str, path: &str) -> Option<RouteMatch<'_, T>> {
        let trimmed = path.strip_prefix('/').unwrap_or(path);
        let segments: Vec<&str> = if trimmed.is_empty() {
            Vec::new()
        } else {
            trimmed.split('/').collect()
        };
        let mut best: Option<(&RouteKey, &T, BTreeMap<String, String>)> = None;
        for (key, value) in &self.routes {
            let Some(params) = key.matches(method, &segments) else {
                continue;
            };
            let better = match &best {
                None => true,
                Some((current, _, _)) => key.specificity() > current.specificity(),
            };
            if better {
                best = Some((key, value, params));
            }
        }
        if let Some((route_key, value, path_parameters)) = best {
            return Some(RouteMatch {
                route_key,
                value,
                path_parameters,
            });
        }
        self.routes
            .iter()
            .find(|(k, _)| k.is_default())
            .map(|(route_key, value)| RouteMatch {
                route_key,
                value,
                path_parameters: BTreeMap::new(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(keys: &[&str]) -> RouteTable<String> {
        let mut t = RouteTable::new();
        for k in keys {
            t.insert(RouteKey::parse(k).unwrap(), (*k).to_owned());
        }
        t
    }

    fn pick(
        t: &RouteTable<String>,
        method: &str,
        path: &str,
    ) -> Option<(String, Vec<(String, String)>)> {
        t.select(method, path).map(|m| {
            (
                m.value.clone(),
                m.path_parameters.into_iter().collect::<Vec<_>>(),
            )
        })
    }

    #[test]
    fn parses_route_keys_and_refuses_bad_ones() {
        for good in [
            "$default",
            "GET /",
            "GET /items",
            "ANY /{proxy+}",
            "POST /items/{id}/parts/{part}",
            "DELETE /a/{rest+}",
        ] {
            assert_eq!(RouteKey::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            "GET",
            "GET items",
            "FETCH /x",
            "get /x",
            "GET /a//b",
            "GET /{proxy+}/tail",
            "GET /a{id}",
            "GET /{}",
            "GET /{id}/{id}",
            "GET /a b",
        ] {
            assert!(RouteKey::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exact_beats_variables_beats_greedy_beats_default() {
        let t = table(&[
            "$default",
            "ANY /{proxy+}",
            "GET /items/{id}",
            "GET /items/special",
            "GET /items/{id}/{proxy+}",
        ]);
        assert_eq!(
            pick(&t, "GET", "/items/special").unwrap().0,
            "GET /items/special"
        );
        assert_eq!(
            pick(&t, "GET", "/items/42").unwrap(),
            (
                "GET /items/{id}".to_owned(),
                vec![("id".to_owned(), "42".to_owned())]
            )
        );
        assert_eq!(
            pick(&t, "GET", "/items/42/a/b").unwrap(),
            (
                "GET /items/{id}/{proxy+}".to_owned(),
                vec![
                    ("id".to_owned(), "42".to_owned()),
                    ("proxy".to_owned(), "a/b".to_owned())
                ]
            )
        );
        assert_eq!(
            pick(&t, "POST", "/items/42").unwrap(),
            (
                "ANY /{proxy+}".to_owned(),
                vec![("proxy".to_owned(), "items/42".to_owned())]
            )
        );
        assert_eq!(pick(&t, "GET", "/").unwrap().0, "$default");
    }

    #[test]
    fn a_named_method_beats_any_on_the_same_path() {
        let t = table(&["ANY /pets", "GET /pets"]);
        assert_eq!(pick(&t, "GET", "/pets").unwrap().0, "GET /pets");
        assert_eq!(pick(&t, "PUT", "/pets").unwrap().0, "ANY /pets");
    }

    #[test]
    fn nothing_matches_without_a_default() {
        let t = table(&["GET /items/{id}", "GET /"]);
        assert_eq!(pick(&t, "GET", "/items"), None);
        assert_eq!(
            pick(&t, "GET", "/items/"),
            None,
            "an empty variable does not match"
        );
        assert_eq!(pick(&t, "POST", "/items/1"), None);
        assert_eq!(pick(&t, "GET", "/").unwrap().0, "GET /");
        assert_eq!(pick(&t, "GET", "").unwrap().0, "GET /");
    }

    #[test]
    fn a_greedy_variable_needs_at_least_one_segment() {
        let t = table(&["GET /files/{path+}"]);
        assert_eq!(pick(&t, "GET", "/files"), None);
        assert_eq!(
            pick(&t, "GET", "/files/a/b.txt").unwrap().1,
            vec![("path".to_owned(), "a/b.txt".to_owned())]
        );
    }

    #[test]
    fn inserting_a_key_again_replaces_it() {
        let mut t = table(&["GET /x"]);
        t.insert(RouteKey::parse("GET /x").unwrap(), "new".to_owned());
        assert_eq!(pick(&t, "GET", "/x").unwrap().0, "new");
    }
}
