//! Slash-separated paths, cleaned as Go's `path` package cleans them.

/// Go's `path.Clean`: remove `.`, resolve `..` lexically, collapse slashes. Empty is `.`.
pub fn clean(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// Go's `path.Join`: join the non-empty elements and clean; empty if all are empty.
pub fn join(parts: &[&str]) -> String {
    let nonempty: Vec<&str> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
    if nonempty.is_empty() {
        return String::new();
    }
    clean(&nonempty.join("/"))
}

pub fn is_abs(p: &str) -> bool {
    p.starts_with('/')
}

/// Go's `path.Base`.
pub fn base(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        return "/".into();
    }
    t.rsplit('/').next().unwrap_or(t).to_string()
}

/// BuildKit's `NormalizeWorkdir` on Linux: a relative directory is joined to the current one
/// (or `/`) and cleaned; an absolute one is kept as written.
pub fn normalize_workdir(current: &str, wd: &str) -> String {
    let mut parent = if current.is_empty() {
        "/".to_string()
    } else {
        current.to_string()
    };
    if !is_abs(&parent) {
        parent = join(&["/", &parent]);
    }
    let wd = if wd.is_empty() { parent.as_str() } else { wd };
    if is_abs(wd) {
        wd.to_string()
    } else {
        join(&[&parent, wd])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_go() {
        assert_eq!(clean("/a/../b//c/."), "/b/c");
        assert_eq!(clean("../a"), "../a");
        assert_eq!(clean("/.."), "/");
        assert_eq!(clean(""), ".");
        assert_eq!(join(&["/", "app", "x"]), "/app/x");
        assert_eq!(join(&["", ""]), "");
        assert_eq!(base("/run/secrets/tok"), "tok");
        assert_eq!(base("a/"), "a");
        assert_eq!(normalize_workdir("", "app"), "/app");
        assert_eq!(normalize_workdir("/app", "../src/"), "/src");
        assert_eq!(normalize_workdir("/app", "/abs/../x/"), "/abs/../x/");
        assert_eq!(normalize_workdir("/app", ""), "/app");
    }
}
