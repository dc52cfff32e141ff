//! The container's uid, gid and supplementary groups.
//!
//! As containerd: the user string is `run_as_username`, else `run_as_user`,
//! with `:<run_as_group>` appended when that is set (a group without a user
//! is refused), else the image's `USER`, else root. The string is one of
//! `uid`, `uid:gid`, `name`, `name:group`, `uid:group`, `name:gid`:
//! - a name is looked up in the image's `/etc/passwd` (`/etc/group` for a
//!   group); a name that is not there is refused, naming it;
//! - a bare uid takes the gid of its passwd entry, or 0 when it has none;
//! - an explicit group (number or name) wins over the passwd gid;
//! - ids must lie in `0..=i32::MAX` (runc's limit).
//!
//! Supplementary groups with the `Merge` policy (the default): the groups of
//! `/etc/group` that list the user as a member (not the group named like the
//! user), plus the CRI `supplemental_groups`; with `Strict` only the latter.
//! The primary gid is always among them. The list is sorted and deduplicated.
//! A numeric `run_as_username` is a uid, as the kubelet only ever sends
//! names there.

use k8s_cri::v1::{LinuxContainerSecurityContext, SupplementalGroupsPolicy};

use super::image_files::ImageFiles;
use crate::error::CriError;

/// The process identity that goes into the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// One `/etc/passwd` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// One `/etc/group` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// Parses `/etc/passwd`, skipping comments and malformed lines as libc does.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 4 || f[0].is_empty() {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].trim().parse().ok()?,
                gid: f[3].trim().parse().ok()?,
            })
        })
        .collect()
}

/// Parses `/etc/group`, skipping comments and malformed lines.
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 3 || f[0].is_empty() {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: f[2].trim().parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|m| !m.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// The image's user database, read lazily once.
struct Db<'a> {
    files: &'a dyn ImageFiles,
    passwd: Option<Vec<PasswdEntry>>,
    group: Option<Vec<GroupEntry>>,
}

impl<'a> Db<'a> {
    fn new(files: &'a dyn ImageFiles) -> Self {
        Db {
            files,
            passwd: None,
            group: None,
        }
    }

    fn text(&self, path: &str) -> Result<String, CriError> {
        let bytes = self.files.read(path)?.unwrap_or_default();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn passwd(&mut self) -> Result<&[PasswdEntry], CriError> {
        if self.passwd.is_none() {
            self.passwd = Some(parse_passwd(&self.text("/etc/passwd")?));
        }
        Ok(self.passwd.as_deref().unwrap_or_default())
    }

    fn group(&mut self) -> Result<&[GroupEntry], CriError> {
        if self.group.is_none() {
            self.group = Some(parse_group(&self.text("/etc/group")?));
        }
        Ok(self.group.as_deref().unwrap_or_default())
    }
}

/// Where the user string came from, for error messages.
#[derive(Debug, Clone, Copy)]
struct Source(&'static str);

const RUN_AS_USERNAME: Source = Source("linux.security_context.run_as_username");
const RUN_AS_USER: Source = Source("linux.security_context.run_as_user");
const IMAGE_USER: Source = Source("image config User");

fn id_in_range(v: i64, what: &str, src: Source) -> Result<u32, CriError> {
    if (0..=i64::from(i32::MAX)).contains(&v) {
        Ok(v as u32)
    } else {
        Err(CriError::invalid(
            src.0,
            format!("{what} {v} is out of range 0..={}", i32::MAX),
        ))
    }
}

/// A numeric id, `None` for a name.
fn numeric(s: &str, what: &str, src: Source) -> Result<Option<u32>, CriError> {
    if s.is_empty() {
        return Err(CriError::invalid(src.0, format!("empty {what}")));
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    let v: i64 = s
        .parse()
        .map_err(|_| CriError::invalid(src.0, format!("{what} {s} is out of range 0..={}", i32::MAX)))?;
    id_in_range(v, what, src).map(Some)
}

/// The CRI user string and where it came from; `None` when the CRI sets no
/// user.
fn cri_user(sc: Option<&LinuxContainerSecurityContext>) -> Result<Option<(String, Source)>, CriError> {
    let Some(sc) = sc else { return Ok(None) };
    let user = if !sc.run_as_username.is_empty() {
        Some((sc.run_as_username.clone(), RUN_AS_USERNAME))
    } else {
        sc.run_as_user.as_ref().map(|u| (u.value.to_string(), RUN_AS_USER))
    };
    match (user, &sc.run_as_group) {
        (None, Some(g)) => Err(CriError::invalid(
            "linux.security_context.run_as_group",
            format!("group {} is set without run_as_user or run_as_username", g.value),
        )),
        (None, None) => Ok(None),
        (Some(u), None) => Ok(Some(u)),
        (Some((u, src)), Some(g)) => {
            id_in_range(g.value, "gid", Source("linux.security_context.run_as_group"))?;
            Ok(Some((format!("{u}:{}", g.value), src)))
        }
    }
}

/// Resolves `userstr` to a uid and gid.
fn resolve_ids(userstr: &str, src: Source, db: &mut Db<'_>) -> Result<(u32, u32), CriError> {
    let mut parts = userstr.split(':');
    let user = parts.next().unwrap_or_default();
    let group = parts.next();
    if parts.next().is_some() {
        return Err(CriError::invalid(src.0, format!("invalid user {userstr:?}")));
    }
    let uid_num = numeric(user, "uid", src)?;
    let (uid, passwd_gid) = match uid_num {
        Some(uid) => (uid, db.passwd()?.iter().find(|e| e.uid == uid).map(|e| e.gid)),
        None => {
            let e =
                db.passwd()?.iter().find(|e| e.name == user).ok_or_else(|| {
                    CriError::invalid(src.0, format!("user {user:?} is not in the image's /etc/passwd"))
                })?;
            (e.uid, Some(e.gid))
        }
    };
    let gid = match group {
        None => passwd_gid.unwrap_or(0),
        Some(g) => match numeric(g, "gid", src)? {
            Some(gid) => gid,
            None => db
                .group()?
                .iter()
                .find(|e| e.name == g)
                .map(|e| e.gid)
                .ok_or_else(|| CriError::invalid(src.0, format!("group {g:?} is not in the image's /etc/group")))?,
        },
    };
    Ok((uid, gid))
}

/// The groups of `/etc/group` listing the user (`userpart`: a uid or a
/// name) as a member, as containerd's `WithAdditionalGIDs`.
fn member_groups(userpart: &str, db: &mut Db<'_>) -> Result<Vec<u32>, CriError> {
    let name = if !userpart.is_empty() && userpart.bytes().all(|b| b.is_ascii_digit()) {
        let Ok(uid) = userpart.parse::<u32>() else {
            return Ok(vec![]);
        };
        match db.passwd()?.iter().find(|e| e.uid == uid) {
            Some(e) => e.name.clone(),
            None => return Ok(vec![]),
        }
    } else {
        userpart.to_string()
    };
    Ok(db
        .group()?
        .iter()
        .filter(|g| g.name != name && g.members.contains(&name))
        .map(|g| g.gid)
        .collect())
}

/// Resolves the container's user from its security context and the image's
/// `USER` (see the module doc).
pub fn resolve_user(
    sc: Option<&LinuxContainerSecurityContext>,
    image_user: Option<&str>,
    files: &dyn ImageFiles,
) -> Result<ResolvedUser, CriError> {
    let mut db = Db::new(files);
    let (userstr, src) = match cri_user(sc)? {
        Some(u) => u,
        None => match image_user.filter(|u| !u.is_empty()) {
            Some(u) => (u.to_string(), IMAGE_USER),
            None => ("0".to_string(), IMAGE_USER),
        },
    };
    let (uid, gid) = resolve_ids(&userstr, src, &mut db)?;

    let policy_raw = sc.map(|s| s.supplemental_groups_policy).unwrap_or_default();
    let policy = SupplementalGroupsPolicy::try_from(policy_raw).map_err(|_| {
        CriError::invalid(
            "linux.security_context.supplemental_groups_policy",
            format!("unknown policy {policy_raw}"),
        )
    })?;
    let mut gids = vec![gid];
    if policy == SupplementalGroupsPolicy::Merge {
        let userpart = userstr.split(':').next().unwrap_or_default();
        gids.extend(member_groups(userpart, &mut db)?);
    }
    for (i, g) in sc
        .map(|s| s.supplemental_groups.as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let g = u32::try_from(*g).map_err(|_| {
            CriError::invalid(
                "linux.security_context.supplemental_groups",
                format!("[{i}] {g} is not a valid gid"),
            )
        })?;
        gids.push(g);
    }
    gids.sort_unstable();
    gids.dedup();
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids: gids,
    })
}

#[cfg(test)]
mod tests {
    use k8s_cri::v1::Int64Value;

    use super::*;
    use crate::oci::test_support::MapFiles;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        # comment\n\
        daemon:x:1:1::/:/bin/false\n\
        broken line\n\
        www:x:33:33::/var/www:/bin/sh\n\
        alice:x:1000:1000::/home/alice:/bin/sh\n";
    const GROUP: &str = "root:x:0:\n\
        daemon:x:1:alice\n\
        www:x:33:alice,bob\n\
        alice:x:1000:alice\n\
        staff:x:50:\n\
        wheel:x:10:root\n";

    fn files() -> MapFiles {
        MapFiles::new(&[("/etc/passwd", PASSWD), ("/etc/group", GROUP)])
    }

    fn sc() -> LinuxContainerSecurityContext {
        LinuxContainerSecurityContext::default()
    }

    fn resolve(sc: Option<&LinuxContainerSecurityContext>, image: Option<&str>) -> Result<ResolvedUser, CriError> {
        resolve_user(sc, image, &files())
    }

    fn user(uid: u32, gid: u32, gids: &[u32]) -> ResolvedUser {
        ResolvedUser {
            uid,
            gid,
            additional_gids: gids.to_vec(),
        }
    }

    #[test]
    fn default_is_root_with_roots_groups() {
        assert_eq!(resolve(None, None).unwrap(), user(0, 0, &[0, 10]));
    }

    #[test]
    fn image_user_forms() {
        assert_eq!(resolve(None, Some("alice")).unwrap(), user(1000, 1000, &[1, 33, 1000]));
        assert_eq!(resolve(None, Some("1000")).unwrap(), user(1000, 1000, &[1, 33, 1000]));
        assert_eq!(
            resolve(None, Some("alice:staff")).unwrap(),
            user(1000, 50, &[1, 33, 50])
        );
        assert_eq!(resolve(None, Some("1000:7")).unwrap(), user(1000, 7, &[1, 7, 33]));
        assert_eq!(resolve(None, Some("www:0")).unwrap(), user(33, 0, &[0]));
        // A uid without a passwd entry is fine; its gid is 0.
        assert_eq!(resolve(None, Some("4242")).unwrap(), user(4242, 0, &[0]));
    }

    #[test]
    fn unknown_names_are_refused_naming_them() {
        let err = resolve(None, Some("mallory")).unwrap_err().to_string();
        assert!(err.contains("mallory") && err.contains("/etc/passwd"), "{err}");
        let err = resolve(None, Some("alice:nogroup")).unwrap_err().to_string();
        assert!(err.contains("nogroup") && err.contains("/etc/group"), "{err}");
        let mut s = sc();
        s.run_as_username = "ghost".into();
        let err = resolve(Some(&s), None).unwrap_err().to_string();
        assert!(
            err.starts_with("linux.security_context.run_as_username") && err.contains("ghost"),
            "{err}"
        );
        // No /etc/passwd at all: a name cannot be found.
        let err = resolve_user(None, Some("alice"), &MapFiles::new(&[])).unwrap_err();
        assert!(err.to_string().contains("alice"));
        assert!(resolve(None, Some("a:b:c")).is_err());
    }

    #[test]
    fn cri_user_overrides_the_image() {
        let mut s = sc();
        s.run_as_user = Some(Int64Value { value: 1001 });
        assert_eq!(resolve(Some(&s), Some("alice")).unwrap(), user(1001, 0, &[0]));
        s.run_as_group = Some(Int64Value { value: 2002 });
        assert_eq!(resolve(Some(&s), Some("alice")).unwrap(), user(1001, 2002, &[2002]));
        // run_as_username wins over run_as_user.
        s.run_as_username = "alice".into();
        assert_eq!(resolve(Some(&s), None).unwrap(), user(1000, 2002, &[1, 33, 2002]));
        // A numeric username is a uid.
        s.run_as_username = "33".into();
        s.run_as_group = None;
        assert_eq!(resolve(Some(&s), None).unwrap(), user(33, 33, &[33]));
    }

    #[test]
    fn group_without_user_and_bad_ids_are_refused() {
        let mut s = sc();
        s.run_as_group = Some(Int64Value { value: 5 });
        let err = resolve(Some(&s), Some("alice")).unwrap_err().to_string();
        assert!(err.starts_with("linux.security_context.run_as_group"), "{err}");
        let mut s = sc();
        s.run_as_user = Some(Int64Value { value: -1 });
        let err = resolve(Some(&s), None).unwrap_err().to_string();
        assert!(err.starts_with("linux.security_context.run_as_user"), "{err}");
        s.run_as_user = Some(Int64Value { value: 1 << 40 });
        assert!(resolve(Some(&s), None).is_err());
        assert!(resolve(None, Some("99999999999")).is_err());
    }

    #[test]
    fn supplemental_groups_merge_or_strict() {
        let mut s = sc();
        s.run_as_username = "alice".into();
        s.supplemental_groups = vec![5678, 1234, 33];
        assert_eq!(
            resolve(Some(&s), None).unwrap(),
            user(1000, 1000, &[1, 33, 1000, 1234, 5678])
        );
        s.supplemental_groups_policy = SupplementalGroupsPolicy::Strict as i32;
        assert_eq!(
            resolve(Some(&s), None).unwrap(),
            user(1000, 1000, &[33, 1000, 1234, 5678])
        );
        s.supplemental_groups = vec![-3];
        let err = resolve(Some(&s), None).unwrap_err().to_string();
        assert!(err.contains("supplemental_groups") && err.contains("[0]"), "{err}");
        s.supplemental_groups = vec![];
        s.supplemental_groups_policy = 7;
        assert!(resolve(Some(&s), None).is_err());
    }

    #[test]
    fn parsers_skip_garbage() {
        assert_eq!(parse_passwd(PASSWD).len(), 4);
        let g = parse_group(GROUP);
        assert_eq!(g[2].members, vec!["alice", "bob"]);
        assert!(parse_group("x:y:notanumber:\n").is_empty());
    }
}
