//! Users and groups of an image, from its `/etc/passwd` and `/etc/group`, for `USER` and
//! `--chown`.
//!
//! The rules follow runc and BuildKit:
//! - `USER name` takes the uid and primary gid from `/etc/passwd`, plus every group of
//!   `/etc/group` that lists the user; a numeric uid missing from `/etc/passwd` runs with gid 0;
//!   `USER uid:gid` and `USER name:group` take the group as given.
//! - `--chown=user` without a group uses the uid as the gid (the Dockerfile reference: "a
//!   username without groupname or a UID without GID will use the same numeric UID as the GID").

use thiserror::Error;

/// Why a user or group could not be resolved.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
    #[error("invalid user specification {0:?}")]
    Invalid(String),
}

/// A user a process runs as.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: Option<String>,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 || line.starts_with('#') {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f.get(5).copied().unwrap_or(""),
        })
    })
}

fn group_entries(group: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    group.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 3 || line.starts_with('#') {
            return None;
        }
        let members = f
            .get(3)
            .map(|m| m.split(',').filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        Some((f[0], f[2].parse().ok()?, members))
    })
}

fn split(spec: &str) -> Result<(&str, Option<&str>), UserError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() || group == Some("") {
        return Err(UserError::Invalid(spec.into()));
    }
    Ok((user, group))
}

fn lookup_group(group: &str, groups: &str) -> Result<u32, UserError> {
    if let Ok(gid) = group.parse() {
        return Ok(gid);
    }
    group_entries(groups)
        .find(|(name, _, _)| *name == group)
        .map(|(_, gid, _)| gid)
        .ok_or_else(|| UserError::NoGroup(group.into()))
}

/// Resolve `USER` for a RUN step. An empty spec means root.
pub fn exec_user(spec: &str, passwd: &str, groups: &str) -> Result<ExecUser, UserError> {
    if spec.is_empty() {
        return Ok(ExecUser {
            home: Some("/root".into()),
            ..Default::default()
        });
    }
    let (user, group) = split(spec)?;
    let entry = match user.parse::<u32>() {
        Ok(uid) => passwd_entries(passwd).find(|e| e.uid == uid),
        Err(_) => Some(
            passwd_entries(passwd)
                .find(|e| e.name == user)
                .ok_or_else(|| UserError::NoUser(user.into()))?,
        ),
    };
    let uid = match &entry {
        Some(e) => e.uid,
        None => user.parse().map_err(|_| UserError::NoUser(user.into()))?,
    };
    let gid = match group {
        Some(g) => lookup_group(g, groups)?,
        None => entry.as_ref().map_or(0, |e| e.gid),
    };
    let mut additional_gids = Vec::new();
    if group.is_none()
        && let Some(e) = &entry
    {
        for (_, g, members) in group_entries(groups) {
            if members.contains(&e.name) && g != gid && !additional_gids.contains(&g) {
                additional_gids.push(g);
            }
        }
    }
    Ok(ExecUser {
        uid,
        gid,
        additional_gids,
        home: entry.map(|e| e.home.to_string()),
    })
}

/// Resolve `--chown` for COPY and ADD.
pub fn chown(spec: &str, passwd: &str, groups: &str) -> Result<(u32, u32), UserError> {
    let (user, group) = split(spec)?;
    let uid = match user.parse() {
        Ok(uid) => uid,
        Err(_) => passwd_entries(passwd)
            .find(|e| e.name == user)
            .map(|e| e.uid)
            .ok_or_else(|| UserError::NoUser(user.into()))?,
    };
    let gid = match group {
        Some(g) => lookup_group(g, groups)?,
        None => uid,
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nweb:x:33:33::/var/www:/bin/false\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:app,web\napp:x:1000:\nwww:x:33:\naudio:x:29:app\n";

    #[test]
    fn run_users() {
        assert_eq!(exec_user("", PASSWD, GROUP).unwrap().uid, 0);
        let app = exec_user("app", PASSWD, GROUP).unwrap();
        assert_eq!(
            (app.uid, app.gid, app.additional_gids.clone()),
            (1000, 1000, vec![50, 29])
        );
        assert_eq!(app.home.as_deref(), Some("/home/app"));
        let by_id = exec_user("1000", PASSWD, GROUP).unwrap();
        assert_eq!((by_id.uid, by_id.gid), (1000, 1000));
        let unknown = exec_user("4242", PASSWD, GROUP).unwrap();
        assert_eq!((unknown.uid, unknown.gid), (4242, 0));
        let with_group = exec_user("app:staff", PASSWD, GROUP).unwrap();
        assert_eq!((with_group.uid, with_group.gid), (1000, 50));
        assert!(with_group.additional_gids.is_empty());
        assert_eq!(
            exec_user("nobody", PASSWD, GROUP),
            Err(UserError::NoUser("nobody".into()))
        );
        assert_eq!(
            exec_user("app:nogroup", PASSWD, GROUP),
            Err(UserError::NoGroup("nogroup".into()))
        );
        assert!(exec_user("app:", PASSWD, GROUP).is_err());
    }

    #[test]
    fn chown_specs() {
        assert_eq!(chown("app", PASSWD, GROUP).unwrap(), (1000, 1000));
        assert_eq!(
            chown("web", PASSWD, GROUP).unwrap(),
            (33, 33),
            "the uid doubles as the gid"
        );
        assert_eq!(chown("app:staff", PASSWD, GROUP).unwrap(), (1000, 50));
        assert_eq!(chown("10:20", PASSWD, GROUP).unwrap(), (10, 20));
        assert_eq!(chown("7", "", "").unwrap(), (7, 7));
        assert!(chown("ghost", PASSWD, GROUP).is_err());
    }
}
