//! Lines of `/proc/PID/maps`, parsed once for the two readers of them:
//! the debug-build placement check (which mappings are shared) and the
//! inventory (which processes map a segment).

/// One line of `/proc/PID/maps`: `start-end perms offset dev inode path`
/// (the path is not kept: a file is known by its device and inode, as the
/// path is the mapping process's, in its own mount namespace).
pub(crate) struct MapsLine<'a> {
    pub(crate) start: usize,
    pub(crate) end: usize,
    /// `rwxs` / `rwxp`: the fourth letter says shared or private.
    pub(crate) perms: &'a [u8],
    /// The mapped file's device (`major:minor`, as `st_dev` encodes it:
    /// [`dev_of`]); 0 for an anonymous mapping.
    pub(crate) dev: u64,
    pub(crate) inode: u64,
}

impl MapsLine<'_> {
    /// Whether the mapping is shared (`MAP_SHARED`).
    pub(crate) fn is_shared(&self) -> bool {
        self.perms.get(3) == Some(&b's')
    }
}

/// The lines of a `maps` file's bytes that parse (the kernel writes them
/// all so; a line cut by a short read is skipped).
pub(crate) fn lines(maps: &[u8]) -> impl Iterator<Item = MapsLine<'_>> {
    maps.split(|&b| b == b'\n').filter_map(parse)
}

fn parse(line: &[u8]) -> Option<MapsLine<'_>> {
    let hex = |text: &[u8]| usize::from_str_radix(std::str::from_utf8(text).ok()?, 16).ok();
    let mut fields = line
        .split(|b| b.is_ascii_whitespace())
        .filter(|field| !field.is_empty());
    let range = fields.next()?;
    let perms = fields.next()?;
    let _offset = fields.next()?;
    let device = fields.next()?;
    let colon = device.iter().position(|&b| b == b':')?;
    let dev = dev_of(
        u32::try_from(hex(&device[..colon])?).ok()?,
        u32::try_from(hex(&device[colon + 1..])?).ok()?,
    );
    let inode = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
    let dash = range.iter().position(|&b| b == b'-')?;
    Some(MapsLine {
        start: hex(&range[..dash])?,
        end: hex(&range[dash + 1..])?,
        perms,
        dev,
        inode,
    })
}

/// The device number `st_dev` holds for `major:minor` (glibc's and the
/// kernel's encoding, `makedev`).
pub(crate) fn dev_of(major: u32, minor: u32) -> u64 {
    let (major, minor) = (u64::from(major), u64::from(minor));
    ((major & 0xffff_f000) << 32)
        | ((major & 0x0000_0fff) << 8)
        | ((minor & 0xffff_ff00) << 12)
        | (minor & 0x0000_00ff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_file_mapping_and_an_anonymous_one() {
        let maps = b"7f00-7f10 rw-s 00000000 00:1a 4242 /dev/shm/procsync-x\n\
                     7f20-7f30 rw-p 00000000 00:00 0 \n";
        let parsed: Vec<_> = lines(maps).collect();
        assert_eq!(parsed.len(), 2);
        assert_eq!((parsed[0].start, parsed[0].end), (0x7f00, 0x7f10));
        assert!(parsed[0].is_shared() && !parsed[1].is_shared());
        assert_eq!(parsed[0].inode, 4242);
        assert_eq!(parsed[0].dev, 0x1a);
        assert_eq!(parsed[1].dev, 0);
    }
}
