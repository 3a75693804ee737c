//! `struct file` → absolute path, the way `d_path()` / `prepend_path()` do it: walk the dentries
//! up to the mount's root, hop to the parent mount at each mount point, and stop at the root of
//! the root mount. Components are written back to front into a per-CPU scratch buffer (too big
//! for the 512-byte stack), then copied to the record.

use core::ptr::{read_volatile, write_volatile};

use aya_ebpf::{helpers::generated::bpf_probe_read_kernel, macros::map, maps::PerCpuArray};

use crate::shared::{EFAULT, Res, off, read_kernel, read_ptr};

/// Bytes of path the walk can build (a power of two, so `& (PATH_BUF - 1)` bounds an index).
const PATH_BUF: usize = 1024;
/// A dentry name is at most `NAME_MAX` (255) bytes: the scratch buffer has that much slack after
/// `PATH_BUF` so that "masked index + masked length" is provably in bounds for the verifier.
const NAME_MASK: usize = 255;
const SCRATCH_LEN: usize = PATH_BUF + NAME_MASK + 1;
/// What the kernel appends to the name of a pseudo file (memfd, anon inode) in `d_path()`.
const DELETED: &[u8; 10] = b" (deleted)";
/// `struct hlist_bl_node { next, pprev }`: where `pprev` sits in `dentry.d_hash`.
const HLIST_BL_NODE_PPREV: u32 = 8;
/// Dentries plus mount crossings visited at most; deeper paths are reported truncated.
const MAX_STEPS: u32 = 64;

/// Per-CPU work area of the walk. `pos` lives here rather than in a register on purpose: a
/// value loaded from a map is an unknown scalar to the verifier, so the states at the top of the
/// loop look alike whichever way the previous step went (a dentry or a mount crossing) and are
/// pruned. Kept in a register, every path would carry its own range for `pos` and the state count
/// would double at each step (the program then fails to load with E2BIG).
#[repr(C)]
pub struct Scratch {
    pos: u64,
    buf: [u8; SCRATCH_LEN],
}

#[map(name = "PATH_SCRATCH")]
static PATH_SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// Result of [`file_path`]: bytes written to `dst` and whether the path was cut.
pub struct PathLen {
    pub len: u32,
    pub truncated: bool,
}

/// Writes the absolute path of `file` (a `struct file *`) into `dst[..len]`, `len <= DST_MAX`,
/// not NUL-terminated. A path longer than `DST_MAX`, or deeper than the walk goes, is reported
/// `truncated` and keeps its last `len` bytes (it then starts mid-path, not at `/`).
///
/// # Safety
/// `dst` must be valid for writes of `DST_MAX` bytes. `file` may be any address: the kernel
/// structures are only read through `bpf_probe_read_kernel`.
#[inline(always)]
pub unsafe fn file_path<const DST_MAX: usize>(file: *const u8, dst: *mut u8) -> Res<PathLen> {
    let scratch = PATH_SCRATCH.get_ptr_mut(0).ok_or(EFAULT)?;
    // SAFETY: `scratch` is this CPU's PATH_SCRATCH value (non-NULL, checked above), valid for the
    // whole run of the program; only a raw pointer to its field is made.
    let buf = unsafe { (&raw mut (*scratch).buf).cast::<u8>() };
    // SAFETY: as above.
    let pos_slot = unsafe { &raw mut (*scratch).pos };
    let f_path = file.wrapping_add(off!(file_f_path) as usize);
    // SAFETY: read_ptr has no precondition (a probe read).
    let mut dentry = unsafe { read_ptr(f_path, off!(path_dentry))? };
    // SAFETY: as above.
    let mut vfsmnt = unsafe { read_ptr(f_path, off!(path_mnt))? };
    let mount_mnt = off!(mount_mnt) as usize;
    // container_of(vfsmnt, struct mount, mnt)
    let mut mnt = vfsmnt.wrapping_sub(mount_mnt);
    // SAFETY: `pos_slot` is the u64 at the start of the scratch value: valid and 8-byte aligned.
    unsafe { write_volatile(pos_slot, PATH_BUF as u64) };
    let mut complete = false;
    let mut pseudo = false;
    let file_dentry = dentry;

    for _ in 0..MAX_STEPS {
        // SAFETY: read_ptr has no precondition (a probe read).
        let mnt_root = unsafe { read_ptr(vfsmnt, off!(vfsmount_mnt_root))? };
        if dentry == mnt_root {
            // SAFETY: as above.
            let parent = unsafe { read_ptr(mnt, off!(mount_mnt_parent))? };
            if parent == mnt {
                complete = true;
                break;
            }
            // SAFETY: as above.
            dentry = unsafe { read_ptr(mnt, off!(mount_mnt_mountpoint))? };
            mnt = parent;
            vfsmnt = parent.wrapping_add(mount_mnt);
            continue;
        }
        // SAFETY: read_ptr has no precondition (a probe read).
        let parent = unsafe { read_ptr(dentry, off!(dentry_d_parent))? };
        // A dentry that is its own parent without being the mount's root is the root of a
        // detached tree or a pseudo file (`memfd:name`, `anon_inode:...`): its own name is the
        // last component, as in /proc/<pid>/exe ("/memfd:x (deleted)"), unless it is "/".
        let detached_root = parent == dentry;
        let d_name = dentry.wrapping_add(off!(dentry_d_name) as usize);
        // SAFETY: as above.
        let name = unsafe { read_ptr(d_name, off!(qstr_name))? };
        // SAFETY: read_kernel of a u32, valid for any bits.
        let len = unsafe { read_kernel::<u32>(d_name, off!(qstr_len))? } as usize & NAME_MASK;
        if detached_root
            // SAFETY: read_kernel of a u8, valid for any bits.
            && (len == 0 || (len == 1 && unsafe { read_kernel::<u8>(name, 0)? } == b'/'))
        {
            complete = true;
            break;
        }
        // SAFETY: `pos_slot` is valid and aligned (see the first write).
        let pos = unsafe { read_volatile(pos_slot) } as usize;
        if len + 1 > pos {
            break;
        }
        let pos = pos - (len + 1);
        // SAFETY: as above.
        unsafe { write_volatile(pos_slot, pos as u64) };
        let at = pos & (PATH_BUF - 1);
        // SAFETY: `at < PATH_BUF` and `len <= NAME_MASK`, so `at + 1 + len <= SCRATCH_LEN - 1`:
        // both writes stay inside `buf`. The helper copies `len` bytes from the kernel address
        // `name` and fails instead of faulting on a bad one.
        unsafe {
            *buf.add(at) = b'/';
            let ret = bpf_probe_read_kernel(buf.add(at + 1).cast(), len as u32, name.cast());
            if ret != 0 {
                return Err(ret as i32);
            }
        }
        if detached_root {
            complete = true;
            pseudo = true;
            break;
        }
        dentry = parent;
    }

    // SAFETY: `pos_slot` is valid and aligned (see the first write).
    let mut pos = (unsafe { read_volatile(pos_slot) } as usize).min(PATH_BUF);
    if pos == PATH_BUF {
        // The file is the root directory itself.
        pos -= 1;
        // SAFETY: the index is masked below PATH_BUF, inside `buf`.
        unsafe { *buf.add(pos & (PATH_BUF - 1)) = b'/' };
    }
    let mut total = PATH_BUF - pos;
    // d_path() appends " (deleted)" when the file's own dentry is unlinked (`d_unlinked()`:
    // unhashed and not its own parent): an executable removed after exec, one exec'd through an
    // fd after unlink, an O_TMPFILE. `d_unhashed()` is `!dentry->d_hash.pprev`. Checked after
    // the walk, not before: a known boolean carried through the loop would split every verifier
    // state in two (see `Scratch`).
    let deleted = !pseudo
        // SAFETY: read_kernel of a u64 and read_ptr: probe reads of values valid for any bits.
        && unsafe {
            let pprev: u64 = read_kernel(file_dentry, off!(dentry_d_hash) + HLIST_BL_NODE_PPREV)?;
            pprev == 0 && read_ptr(file_dentry, off!(dentry_d_parent))? != file_dentry
        };
    if pseudo || deleted {
        // Pseudo files get their name from `simple_dname()`, which appends " (deleted)", and
        // d_path() appends it to unlinked files; the slack after PATH_BUF holds the suffix so
        // the path stays one contiguous run.
        for (i, &b) in DELETED.iter().enumerate() {
            // SAFETY: `PATH_BUF + i < PATH_BUF + DELETED.len() <= SCRATCH_LEN`: inside `buf`.
            unsafe { *buf.add(PATH_BUF + i) = b };
        }
        total += DELETED.len();
    }
    // Keep the TAIL of a long path: the binary's name and the directories nearest to it say what
    // ran; the head is what gets cut (the walk itself, writing back to front, also keeps the
    // tail when the path outgrows PATH_BUF or MAX_STEPS). The flag tells userspace the path is
    // not a complete absolute one, so it never passes for one.
    let mut len = total;
    let mut start = pos;
    let mut truncated = !complete;
    if len > DST_MAX {
        start = pos + (len - DST_MAX);
        len = DST_MAX;
        truncated = true;
    }
    // The source of a probe read is not bounds-checked by the verifier (only `dst` and `len`
    // are), but keep it inside the scratch buffer anyway: start + len <= SCRATCH_LEN.
    let start = start.min(SCRATCH_LEN - len);
    // SAFETY: `dst` is valid for `DST_MAX >= len` bytes (the caller's contract) and
    // `buf[start..start + len]` lies inside the scratch buffer (clamped above); the helper copies
    // exactly `len` bytes.
    let ret = unsafe {
        bpf_probe_read_kernel(dst.cast(), len as u32, buf.add(start).cast_const().cast())
    };
    if ret != 0 {
        return Err(ret as i32);
    }
    Ok(PathLen {
        len: len as u32,
        truncated,
    })
}
