//! User names for uids, from `/etc/passwd` (no NSS lookup: a user known
//! only to LDAP is shown by number).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;

/// The user names `/etc/passwd` gives uids (empty if it cannot be read).
pub(crate) struct Users(HashMap<u32, String>);

impl Users {
    /// Reads `/etc/passwd`.
    pub(crate) fn load() -> Users {
        let text = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        Users(parse_passwd(&text))
    }

    /// `uid`'s user name, or the number if it has none.
    pub(crate) fn name(&self, uid: u32) -> String {
        self.0.get(&uid).cloned().unwrap_or_else(|| uid.to_string())
    }
}

/// `name:password:uid:...` lines to a map from uid to name.
fn parse_passwd(text: &str) -> HashMap<u32, String> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let uid = fields.nth(1)?.parse().ok()?;
            Some((uid, name.to_string()))
        })
        .collect()
}

/// For a permission error on `name`: " (owner: USER, uid N; this is uid M)"
/// when the file belongs to another user, so the message says whose it is.
pub(crate) fn describe_other_owner(name: &str) -> Option<String> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    let meta = std::fs::symlink_metadata(format!("{}/{bare}", shm::inventory::SHM_DIR)).ok()?;
    let me = std::fs::metadata("/proc/self").ok()?.uid();
    (meta.uid() != me).then(|| {
        format!(
            " (owner: {}, uid {}; this is uid {me})",
            Users::load().name(meta.uid()),
            meta.uid()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lines_give_names_by_uid() {
        let users = parse_passwd(
            "root:x:0:0:root:/root:/bin/sh\nbad line\nana:x:1000:1000::/home/ana:/bin/sh\n",
        );
        assert_eq!(users.get(&0).map(String::as_str), Some("root"));
        assert_eq!(users.get(&1000).map(String::as_str), Some("ana"));
        assert_eq!(users.len(), 2);
    }
}
