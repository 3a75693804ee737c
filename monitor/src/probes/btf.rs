//! Kernel struct offsets from BTF, the eBPF side's stand-in for CO-RE (aya-ebpf cannot emit CO-RE
//! relocations from Rust).
//!
//! A small, bounds-checked reader of the BTF blob in `/sys/kernel/btf/vmlinux` (header, type
//! section, string section; see the kernel's `Documentation/bpf/btf.rst`) that answers one
//! question: at which bit offset does `struct S` hold member `m`, looking through anonymous
//! nested structs and unions the way C does. [`kernel_offsets`] turns the answers into the
//! [`KernelOffsets`] global the loader hands to the eBPF programs. aya's own BTF type accessors
//! are crate-private in 0.14, hence this reader.

use std::{collections::HashMap, ops::Range, path::Path};

use monitor_common::KernelOffsets;

/// Where the running kernel publishes its own BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

const BTF_MAGIC: u16 = 0xeb9f;
const HEADER_LEN: usize = 24;
/// Nesting depth of anonymous structs/unions we look through (the kernel uses 2 or 3).
const MAX_ANON_DEPTH: u32 = 8;
/// Typedef/const/volatile chains followed when sizing a member's type.
const MAX_TYPE_CHAIN: u32 = 32;

// BTF_KIND_* from include/uapi/linux/btf.h.
const KIND_INT: u8 = 1;
const KIND_PTR: u8 = 2;
const KIND_ARRAY: u8 = 3;
const KIND_STRUCT: u8 = 4;
const KIND_UNION: u8 = 5;
const KIND_ENUM: u8 = 6;
const KIND_FWD: u8 = 7;
const KIND_TYPEDEF: u8 = 8;
const KIND_VOLATILE: u8 = 9;
const KIND_CONST: u8 = 10;
const KIND_RESTRICT: u8 = 11;
const KIND_FUNC: u8 = 12;
const KIND_FUNC_PROTO: u8 = 13;
const KIND_VAR: u8 = 14;
const KIND_DATASEC: u8 = 15;
const KIND_FLOAT: u8 = 16;
const KIND_DECL_TAG: u8 = 17;
const KIND_TYPE_TAG: u8 = 18;
const KIND_ENUM64: u8 = 19;

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("BTF blob truncated: {0}")]
    Truncated(&'static str),
    #[error("bad BTF magic {0:#06x} (not BTF, or of the other endianness)")]
    BadMagic(u16),
    #[error("BTF section {0} lies outside the blob")]
    BadSection(&'static str),
    #[error("BTF type {id} has unknown kind {kind}")]
    UnknownKind { id: u32, kind: u8 },
    #[error("BTF string offset {0} is out of range or not NUL-terminated")]
    BadString(u32),
    #[error("BTF type id {0} does not exist")]
    BadTypeId(u32),
    #[error("no struct {0} in BTF")]
    NoStruct(String),
    #[error("struct {strukt} has no member {member}")]
    NoMember { strukt: String, member: String },
    #[error("{strukt}.{member} is a bitfield, not at a byte offset")]
    NotByteAligned { strukt: String, member: String },
    #[error("cannot size BTF type {0}")]
    Unsized(u32),
    #[error("{strukt}: {member} has an unexpected shape ({bits} bits at bit {bit_offset})")]
    Shape {
        strukt: String,
        member: String,
        bits: u32,
        bit_offset: u32,
    },
}

/// Where a member sits inside its (outermost) struct.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    /// Bits from the start of the struct.
    pub bit_offset: u32,
    /// Width in bits: the bitfield size, or the type's size times 8.
    pub bits: u32,
}

#[derive(Clone, Copy, Debug)]
struct Member {
    name_off: u32,
    type_id: u32,
    bit_offset: u32,
    /// 0 when the member is not a bitfield.
    bitfield_size: u32,
}

#[derive(Clone, Debug)]
#[expect(
    clippy::struct_field_names,
    reason = "`size_or_type` is BTF's own name for the union"
)]
struct Type {
    kind: u8,
    /// `size` for INT/STRUCT/UNION/ENUM/FLOAT/DATASEC, the referenced type id otherwise.
    size_or_type: u32,
    /// ARRAY: element type and count.
    array: Option<(u32, u32)>,
    /// STRUCT/UNION: range into `Btf::members`.
    members: Range<usize>,
}

/// A parsed BTF blob: just enough of it to find struct member offsets.
#[derive(Debug)]
pub struct Btf {
    /// Index 0 is `void`, as in BTF type ids.
    types: Vec<Type>,
    members: Vec<Member>,
    strings: Vec<u8>,
    /// Struct and union ids by name.
    by_name: HashMap<String, Vec<u32>>,
}

/// Little-endian reader over a byte slice that reports truncation instead of panicking.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn u32(&mut self, what: &'static str) -> Result<u32, BtfError> {
        let end = self.pos.checked_add(4).ok_or(BtfError::Truncated(what))?;
        let bytes = self
            .data
            .get(self.pos..end)
            .ok_or(BtfError::Truncated(what))?;
        self.pos = end;
        let mut b = [0u8; 4];
        b.copy_from_slice(bytes);
        Ok(u32::from_le_bytes(b))
    }

    fn skip(&mut self, n: usize, what: &'static str) -> Result<(), BtfError> {
        let end = self.pos.checked_add(n).ok_or(BtfError::Truncated(what))?;
        if end > self.data.len() {
            return Err(BtfError::Truncated(what));
        }
        self.pos = end;
        Ok(())
    }

    fn at_end(&self) -> bool {
        self.pos >= self.data.len()
    }
}

fn section<'a>(
    data: &'a [u8],
    base: usize,
    off: u32,
    len: u32,
    name: &'static str,
) -> Result<&'a [u8], BtfError> {
    let start = base
        .checked_add(off as usize)
        .ok_or(BtfError::BadSection(name))?;
    let end = start
        .checked_add(len as usize)
        .ok_or(BtfError::BadSection(name))?;
    data.get(start..end).ok_or(BtfError::BadSection(name))
}

impl Btf {
    /// Reads and parses the running kernel's BTF.
    pub fn from_sys_fs() -> Result<Self, BtfError> {
        Self::from_file(Path::new(VMLINUX_BTF))
    }

    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let data = std::fs::read(path).map_err(|source| BtfError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&data)
    }

    /// Parses a little-endian BTF blob. Every offset and count is checked against the blob, so
    /// malformed input yields an error, never a panic.
    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        let header = data
            .get(..HEADER_LEN)
            .ok_or(BtfError::Truncated("header"))?;
        let magic = u16::from_le_bytes([header[0], header[1]]);
        if magic != BTF_MAGIC {
            return Err(BtfError::BadMagic(magic));
        }
        let mut r = Reader {
            data: header,
            pos: 4,
        };
        let hdr_len = r.u32("hdr_len")? as usize;
        let type_off = r.u32("type_off")?;
        let type_len = r.u32("type_len")?;
        let str_off = r.u32("str_off")?;
        let str_len = r.u32("str_len")?;
        if hdr_len < HEADER_LEN || hdr_len > data.len() {
            return Err(BtfError::BadSection("header"));
        }
        let type_data = section(data, hdr_len, type_off, type_len, "types")?;
        let strings = section(data, hdr_len, str_off, str_len, "strings")?.to_vec();

        let mut btf = Btf {
            types: vec![Type {
                kind: 0,
                size_or_type: 0,
                array: None,
                members: 0..0,
            }],
            members: Vec::new(),
            strings,
            by_name: HashMap::new(),
        };
        let mut r = Reader {
            data: type_data,
            pos: 0,
        };
        while !r.at_end() {
            let id = u32::try_from(btf.types.len()).map_err(|_| BtfError::Truncated("type ids"))?;
            let name_off = r.u32("type name")?;
            let info = r.u32("type info")?;
            let size_or_type = r.u32("type size")?;
            let vlen = (info & 0xffff) as usize;
            let kind = ((info >> 24) & 0x1f) as u8;
            let kind_flag = info >> 31 == 1;
            let mut ty = Type {
                kind,
                size_or_type,
                array: None,
                members: 0..0,
            };
            match kind {
                KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
                | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => {}
                KIND_INT | KIND_VAR | KIND_DECL_TAG => r.skip(4, "type extra")?,
                KIND_ARRAY => {
                    let elem = r.u32("array type")?;
                    let _index = r.u32("array index")?;
                    let nelems = r.u32("array nelems")?;
                    ty.array = Some((elem, nelems));
                }
                KIND_STRUCT | KIND_UNION => {
                    let start = btf.members.len();
                    for _ in 0..vlen {
                        let name_off = r.u32("member name")?;
                        let type_id = r.u32("member type")?;
                        let offset = r.u32("member offset")?;
                        // With kind_flag, the offset word packs bitfield size (high 8 bits)
                        // and bit offset (low 24 bits).
                        let (bit_offset, bitfield_size) = if kind_flag {
                            (offset & 0x00ff_ffff, offset >> 24)
                        } else {
                            (offset, 0)
                        };
                        btf.members.push(Member {
                            name_off,
                            type_id,
                            bit_offset,
                            bitfield_size,
                        });
                    }
                    ty.members = start..btf.members.len();
                    if name_off != 0 {
                        let name = btf.str_at(name_off)?.to_owned();
                        btf.by_name.entry(name).or_default().push(id);
                    }
                }
                KIND_ENUM | KIND_FUNC_PROTO => r.skip(vlen * 8, "enum/func_proto entries")?,
                KIND_DATASEC | KIND_ENUM64 => r.skip(vlen * 12, "datasec/enum64 entries")?,
                other => return Err(BtfError::UnknownKind { id, kind: other }),
            }
            btf.types.push(ty);
        }
        // Every member must name a type that exists, so later lookups can index freely.
        let count = btf.types.len();
        for m in &btf.members {
            if m.type_id as usize >= count {
                return Err(BtfError::BadTypeId(m.type_id));
            }
            btf.str_at(m.name_off)?;
        }
        Ok(btf)
    }

    fn str_at(&self, off: u32) -> Result<&str, BtfError> {
        let tail = self
            .strings
            .get(off as usize..)
            .ok_or(BtfError::BadString(off))?;
        let end = tail
            .iter()
            .position(|&b| b == 0)
            .ok_or(BtfError::BadString(off))?;
        std::str::from_utf8(&tail[..end]).map_err(|_| BtfError::BadString(off))
    }

    fn ty(&self, id: u32) -> Result<&Type, BtfError> {
        self.types.get(id as usize).ok_or(BtfError::BadTypeId(id))
    }

    /// Size in bytes of a type, following typedef/const/volatile/restrict/type-tag links.
    pub fn type_size(&self, mut id: u32) -> Result<u32, BtfError> {
        let first = id;
        // Arrays multiply; iterating (not recursing) keeps a corrupt self-referencing array from
        // overflowing the stack.
        let mut count: u32 = 1;
        for _ in 0..MAX_TYPE_CHAIN {
            let ty = self.ty(id)?;
            let elem_size = match ty.kind {
                KIND_INT | KIND_STRUCT | KIND_UNION | KIND_ENUM | KIND_ENUM64 | KIND_FLOAT => {
                    ty.size_or_type
                }
                KIND_PTR => 8,
                KIND_ARRAY => {
                    let (elem, n) = ty.array.ok_or(BtfError::Unsized(id))?;
                    count = count.checked_mul(n).ok_or(BtfError::Unsized(first))?;
                    id = elem;
                    continue;
                }
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = ty.size_or_type;
                    continue;
                }
                _ => return Err(BtfError::Unsized(id)),
            };
            return elem_size.checked_mul(count).ok_or(BtfError::Unsized(first));
        }
        Err(BtfError::Unsized(first))
    }

    /// Where `member` sits in `struct strukt` (or union), searching anonymous nested structs and
    /// unions. When BTF holds several structs of that name, the first one that has the member
    /// wins (vmlinux BTF is deduplicated; repeats are forward declarations or unrelated).
    pub fn member(&self, strukt: &str, member: &str) -> Result<MemberInfo, BtfError> {
        let ids = self
            .by_name
            .get(strukt)
            .ok_or_else(|| BtfError::NoStruct(strukt.to_owned()))?;
        for &id in ids {
            if let Some(found) = self.find_member(id, member, 0, 0)? {
                return Ok(found);
            }
        }
        Err(BtfError::NoMember {
            strukt: strukt.to_owned(),
            member: member.to_owned(),
        })
    }

    /// Byte offset of a member that is not a bitfield.
    pub fn member_offset(&self, strukt: &str, member: &str) -> Result<u32, BtfError> {
        let info = self.member(strukt, member)?;
        if info.bit_offset % 8 != 0 {
            return Err(BtfError::NotByteAligned {
                strukt: strukt.to_owned(),
                member: member.to_owned(),
            });
        }
        Ok(info.bit_offset / 8)
    }

    fn find_member(
        &self,
        id: u32,
        name: &str,
        base_bits: u32,
        depth: u32,
    ) -> Result<Option<MemberInfo>, BtfError> {
        let ty = self.ty(id)?;
        let Some(members) = self.members.get(ty.members.clone()) else {
            return Ok(None);
        };
        for m in members {
            let bit_offset = base_bits.saturating_add(m.bit_offset);
            let member_name = self.str_at(m.name_off)?;
            if member_name == name {
                let bits = if m.bitfield_size != 0 {
                    m.bitfield_size
                } else {
                    self.type_size(m.type_id)?.saturating_mul(8)
                };
                return Ok(Some(MemberInfo { bit_offset, bits }));
            }
            if member_name.is_empty() && depth < MAX_ANON_DEPTH {
                let inner = self.skip_modifiers(m.type_id)?;
                if matches!(self.ty(inner)?.kind, KIND_STRUCT | KIND_UNION)
                    && let Some(found) = self.find_member(inner, name, bit_offset, depth + 1)?
                {
                    return Ok(Some(found));
                }
            }
        }
        Ok(None)
    }

    fn skip_modifiers(&self, mut id: u32) -> Result<u32, BtfError> {
        for _ in 0..MAX_TYPE_CHAIN {
            let ty = self.ty(id)?;
            match ty.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = ty.size_or_type;
                }
                _ => return Ok(id),
            }
        }
        Err(BtfError::Unsized(id))
    }
}

/// [`KernelOffsets`] plus what could not be found (for the log; the loader never fails on it).
#[derive(Debug)]
pub struct OffsetsReport {
    pub offsets: KernelOffsets,
    /// One line per group that stayed invalid, naming the first lookup that failed.
    pub missing: Vec<String>,
}

/// Fills the groups of [`KernelOffsets`]; a group whose lookups do not all succeed stays
/// invalid (its `valid` flag 0) and is named in `missing`.
pub fn kernel_offsets(btf: &Btf) -> OffsetsReport {
    let mut o = KernelOffsets::UNKNOWN;
    let mut missing = Vec::new();

    let process = (|| -> Result<(), BtfError> {
        o.task_mm = btf.member_offset("task_struct", "mm")?;
        o.task_real_parent = btf.member_offset("task_struct", "real_parent")?;
        o.task_tgid = btf.member_offset("task_struct", "tgid")?;
        o.task_pid = btf.member_offset("task_struct", "pid")?;
        o.task_exit_code = btf.member_offset("task_struct", "exit_code")?;
        o.mm_exe_file = btf.member_offset("mm_struct", "exe_file")?;
        o.mm_arg_start = btf.member_offset("mm_struct", "arg_start")?;
        o.mm_arg_end = btf.member_offset("mm_struct", "arg_end")?;
        o.file_f_path = btf.member_offset("file", "f_path")?;
        o.path_mnt = btf.member_offset("path", "mnt")?;
        o.path_dentry = btf.member_offset("path", "dentry")?;
        o.dentry_d_parent = btf.member_offset("dentry", "d_parent")?;
        o.dentry_d_name = btf.member_offset("dentry", "d_name")?;
        o.dentry_d_hash = btf.member_offset("dentry", "d_hash")?;
        o.qstr_len = btf.member_offset("qstr", "len")?;
        o.qstr_name = btf.member_offset("qstr", "name")?;
        o.mount_mnt = btf.member_offset("mount", "mnt")?;
        o.mount_mnt_parent = btf.member_offset("mount", "mnt_parent")?;
        o.mount_mnt_mountpoint = btf.member_offset("mount", "mnt_mountpoint")?;
        o.vfsmount_mnt_root = btf.member_offset("vfsmount", "mnt_root")?;
        Ok(())
    })();
    match process {
        Ok(()) => o.valid = 1,
        Err(e) => missing.push(format!("process/exec offsets: {e}")),
    }

    let threads = (|| -> Result<(), BtfError> {
        o.task_signal = btf.member_offset("task_struct", "signal")?;
        o.task_thread_node = btf.member_offset("task_struct", "thread_node")?;
        o.signal_thread_head = btf.member_offset("signal_struct", "thread_head")?;
        Ok(())
    })();
    match threads {
        Ok(()) if o.valid == 1 => o.threads_valid = 1,
        Ok(()) => {}
        Err(e) => missing.push(format!("thread-list offsets (fork child_tgid): {e}")),
    }

    let sock = (|| -> Result<(), BtfError> {
        o.socket_sk = btf.member_offset("socket", "sk")?;
        // struct sock starts with its struct sock_common (__sk_common), so offsets inside
        // sock_common are offsets inside sock.
        let common = btf.member_offset("sock", "__sk_common")?;
        let skc = |m: &str| -> Result<u32, BtfError> {
            Ok(common + btf.member_offset("sock_common", m)?)
        };
        o.skc_family = skc("skc_family")?;
        o.skc_num = skc("skc_num")?;
        o.skc_state = skc("skc_state")?;
        o.skc_dport = skc("skc_dport")?;
        o.skc_rcv_saddr = skc("skc_rcv_saddr")?;
        o.skc_daddr = skc("skc_daddr")?;
        o.skc_v6_rcv_saddr = skc("skc_v6_rcv_saddr")?;
        o.skc_v6_daddr = skc("skc_v6_daddr")?;
        let proto = btf.member("sock", "sk_protocol")?;
        o.sk_protocol_bit_offset = proto.bit_offset;
        o.sk_protocol_bits = proto.bits;
        Ok(())
    })();
    match sock {
        // The eBPF side reads the protocol as a u32 word and masks with (1 << bits) - 1.
        Ok(())
            if (1..32).contains(&o.sk_protocol_bits)
                && o.sk_protocol_bit_offset % 8 + o.sk_protocol_bits <= 32 =>
        {
            o.sock_valid = 1;
        }
        Ok(()) => missing.push(format!(
            "socket offsets: sk_protocol has an unexpected shape ({} bits at bit {})",
            o.sk_protocol_bits, o.sk_protocol_bit_offset
        )),
        Err(e) => missing.push(format!("socket offsets (fentry hooks): {e}")),
    }

    let files = (|| -> Result<(), BtfError> {
        o.task_files = btf.member_offset("task_struct", "files")?;
        o.files_fdt = btf.member_offset("files_struct", "fdt")?;
        o.fdtable_max_fds = btf.member_offset("fdtable", "max_fds")?;
        o.fdtable_fd = btf.member_offset("fdtable", "fd")?;
        o.file_private_data = btf.member_offset("file", "private_data")?;
        o.socket_file = btf.member_offset("socket", "file")?;
        o.file_f_inode = btf.member_offset("file", "f_inode")?;
        o.inode_i_ino = btf.member_offset("inode", "i_ino")?;
        Ok(())
    })();
    match files {
        Ok(()) if o.valid == 1 => o.files_valid = 1,
        Ok(()) => {}
        Err(e) => missing.push(format!(
            "file-table offsets (accept records, watched executables): {e}"
        )),
    }

    let file_id = (|| -> Result<(), BtfError> {
        o.file_f_inode = btf.member_offset("file", "f_inode")?;
        o.inode_i_ino = btf.member_offset("inode", "i_ino")?;
        o.inode_i_size = btf.member_offset("inode", "i_size")?;
        o.inode_i_sb = btf.member_offset("inode", "i_sb")?;
        o.super_block_s_dev = btf.member_offset("super_block", "s_dev")?;
        (o.inode_i_mtime_sec, o.inode_i_mtime_nsec) = mtime_offsets(btf)?;
        Ok(())
    })();
    match file_id {
        Ok(()) if o.valid == 1 => o.file_id_valid = 1,
        Ok(()) => {}
        Err(e) => missing.push(format!(
            "inode offsets (the executable's identity in exec records): {e}"
        )),
    }

    let cred = (|| -> Result<(), BtfError> {
        o.task_cred = btf.member_offset("task_struct", "cred")?;
        o.cred_euid = btf.member_offset("cred", "euid")?;
        Ok(())
    })();
    match cred {
        Ok(()) => o.cred_valid = 1,
        Err(e) => missing.push(format!(
            "credential offsets (the effective uid in records): {e}"
        )),
    }

    OffsetsReport {
        offsets: o,
        missing,
    }
}

/// Offsets of the seconds and nanoseconds of `inode`'s mtime. Linux 6.11 split it into
/// `i_mtime_sec` (`time64_t`) and `i_mtime_nsec` (`u32`); before, it was a `struct timespec64`
/// (`time64_t tv_sec; long tv_nsec;`) named `__i_mtime` (6.6 to 6.10) or `i_mtime`. The eBPF side
/// reads an `i64` and a `u32`: for a 64-bit `long` it is pointed at the half holding the value
/// (nanoseconds are below 10^9), which depends on the kernel's byte order, that of this process.
fn mtime_offsets(btf: &Btf) -> Result<(u32, u32), BtfError> {
    let (sec, nsec, nsec_strukt) = if let Ok(sec) = btf.member("inode", "i_mtime_sec") {
        (sec, btf.member("inode", "i_mtime_nsec")?, "inode")
    } else {
        let base = btf
            .member("inode", "__i_mtime")
            .or_else(|_| btf.member("inode", "i_mtime"))?
            .bit_offset;
        let at = |m: MemberInfo| MemberInfo {
            bit_offset: base.saturating_add(m.bit_offset),
            bits: m.bits,
        };
        (
            at(btf.member("timespec64", "tv_sec")?),
            at(btf.member("timespec64", "tv_nsec")?),
            "timespec64",
        )
    };
    let shape = |m: MemberInfo, member: &str, widths: &[u32]| {
        if m.bit_offset.is_multiple_of(8) && widths.contains(&m.bits) {
            Ok(m.bit_offset / 8)
        } else {
            Err(BtfError::Shape {
                strukt: nsec_strukt.to_owned(),
                member: member.to_owned(),
                bits: m.bits,
                bit_offset: m.bit_offset,
            })
        }
    };
    let sec = shape(sec, "mtime seconds", &[64])?;
    let nsec_off = shape(nsec, "mtime nanoseconds", &[32, 64])?;
    let low_half = if nsec.bits == 64 && cfg!(target_endian = "big") {
        4
    } else {
        0
    };
    Ok((sec, nsec_off + low_half))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a BTF blob from (name, info, `size_or_type`, extra words) entries.
    struct Builder {
        types: Vec<u8>,
        strings: Vec<u8>,
    }

    impl Builder {
        fn new() -> Self {
            Builder {
                types: Vec::new(),
                strings: vec![0],
            }
        }

        fn s(&mut self, name: &str) -> u32 {
            if name.is_empty() {
                return 0;
            }
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(name.as_bytes());
            self.strings.push(0);
            off
        }

        fn words(&mut self, w: &[u32]) {
            for x in w {
                self.types.extend_from_slice(&x.to_le_bytes());
            }
        }

        fn int(&mut self, name: &str, size: u32) {
            let n = self.s(name);
            self.words(&[n, u32::from(KIND_INT) << 24, size, size * 8]);
        }

        /// members: (name, type id, bit offset, bitfield size)
        fn composite(
            &mut self,
            kind: u8,
            name: &str,
            size: u32,
            members: &[(&str, u32, u32, u32)],
        ) {
            let n = self.s(name);
            let bitfields = members.iter().any(|m| m.3 != 0);
            let info =
                (u32::from(kind) << 24) | members.len() as u32 | (u32::from(bitfields) << 31);
            self.words(&[n, info, size]);
            for &(mname, ty, off, bits) in members {
                let mn = self.s(mname);
                let offset = if bitfields { (bits << 24) | off } else { off };
                self.words(&[mn, ty, offset]);
            }
        }

        fn build(&self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&BTF_MAGIC.to_le_bytes());
            out.extend_from_slice(&[1, 0]);
            for w in [
                HEADER_LEN as u32,
                0,
                self.types.len() as u32,
                self.types.len() as u32,
                self.strings.len() as u32,
            ] {
                out.extend_from_slice(&w.to_le_bytes());
            }
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }

    /// `struct qstr` as the kernel lays it out: the length sits in an anonymous struct inside an
    /// anonymous union, plus a bitfield struct standing in for old `sk_protocol`.
    fn sample() -> Vec<u8> {
        let mut b = Builder::new();
        b.int("u32", 4); // 1
        b.int("u64", 8); // 2
        b.composite(KIND_STRUCT, "", 8, &[("hash", 1, 0, 0), ("len", 1, 32, 0)]); // 3
        b.composite(KIND_UNION, "", 8, &[("", 3, 0, 0), ("hash_len", 2, 0, 0)]); // 4
        b.composite(
            KIND_STRUCT,
            "qstr",
            16,
            &[("", 4, 0, 0), ("name", 2, 64, 0)],
        ); // 5
        b.composite(
            KIND_STRUCT,
            "oldsock",
            8,
            &[
                ("sk_type", 1, 0, 16),
                ("sk_protocol", 1, 16, 8),
                ("tail", 1, 32, 32),
            ],
        ); // 6
        b.build()
    }

    #[test]
    fn finds_members_inside_anonymous_structs_and_unions() {
        let btf = Btf::parse(&sample()).expect("valid sample");
        assert_eq!(btf.member_offset("qstr", "len").expect("len"), 4);
        assert_eq!(btf.member_offset("qstr", "hash_len").expect("hash_len"), 0);
        assert_eq!(btf.member_offset("qstr", "name").expect("name"), 8);
        assert_eq!(btf.member("qstr", "name").expect("name").bits, 64);
    }

    #[test]
    fn reports_bitfields_with_bit_offset_and_width() {
        let btf = Btf::parse(&sample()).expect("valid sample");
        let m = btf.member("oldsock", "sk_protocol").expect("bitfield");
        assert_eq!(
            m,
            MemberInfo {
                bit_offset: 16,
                bits: 8
            }
        );
        assert!(matches!(btf.member_offset("oldsock", "tail"), Ok(4)));
    }

    #[test]
    fn missing_struct_and_member_are_errors() {
        let btf = Btf::parse(&sample()).expect("valid sample");
        assert!(matches!(
            btf.member("nosuch", "x"),
            Err(BtfError::NoStruct(_))
        ));
        assert!(matches!(
            btf.member("qstr", "nosuch"),
            Err(BtfError::NoMember { .. })
        ));
    }

    #[test]
    fn malformed_blobs_are_rejected_without_panicking() {
        let good = sample();
        // The header's section lengths cover the whole blob, so every truncation is an error.
        for cut in 0..good.len() {
            assert!(
                Btf::parse(&good[..cut]).is_err(),
                "truncated at {cut} accepted"
            );
        }
        assert!(matches!(
            Btf::parse(&good[..10]),
            Err(BtfError::Truncated(_))
        ));
        let mut bad_magic = good.clone();
        bad_magic[0] = 0;
        assert!(matches!(Btf::parse(&bad_magic), Err(BtfError::BadMagic(_))));
        // Type section claiming more bytes than the blob has.
        let mut long_types = good.clone();
        long_types[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Btf::parse(&long_types),
            Err(BtfError::BadSection("types"))
        ));
        // A member pointing at a type id that does not exist.
        let mut b = Builder::new();
        b.composite(KIND_STRUCT, "s", 4, &[("m", 99, 0, 0)]);
        assert!(matches!(
            Btf::parse(&b.build()),
            Err(BtfError::BadTypeId(99))
        ));
        // An array whose element type is itself cannot be sized, and must not recurse forever.
        let mut b = Builder::new();
        b.words(&[0, u32::from(KIND_ARRAY) << 24, 0, 1, 1, 4]);
        let btf = Btf::parse(&b.build()).expect("structurally valid");
        assert!(matches!(btf.type_size(1), Err(BtfError::Unsized(1))));
        // Unknown kind.
        let mut b = Builder::new();
        b.words(&[0, 31 << 24, 0]);
        assert!(matches!(
            Btf::parse(&b.build()),
            Err(BtfError::UnknownKind { kind: 31, .. })
        ));
        // A name offset past the string section.
        let mut b = Builder::new();
        b.words(&[0, (u32::from(KIND_STRUCT) << 24) | 1, 4, 5000, 0, 0]);
        assert!(matches!(
            Btf::parse(&b.build()),
            Err(BtfError::BadString(5000))
        ));
        // Corrupting any single byte must never panic, in parsing or in lookups; many such
        // blobs are rejected outright.
        let mut rejected = 0;
        for i in 0..good.len() {
            let mut corrupt = good.clone();
            corrupt[i] ^= 0xa5;
            match Btf::parse(&corrupt) {
                Ok(btf) => {
                    let _ = btf.member("qstr", "len");
                    let _ = btf.member("oldsock", "sk_protocol");
                }
                Err(_) => rejected += 1,
            }
        }
        assert!(
            rejected > good.len() / 4,
            "only {rejected} of {} corruptions rejected",
            good.len()
        );
    }

    /// `struct file`, `struct super_block` and a `struct inode` whose mtime is `mtime` (members
    /// `(name, type id, bit offset)`, type 1 = u32, 2 = u64, 3 = timespec64), laid out as Linux
    /// 6.18 has the other members.
    fn inode_btf(mtime: &[(&str, u32, u32)]) -> Btf {
        let mut b = Builder::new();
        b.int("u32", 4); // 1
        b.int("u64", 8); // 2
        b.composite(
            KIND_STRUCT,
            "timespec64",
            16,
            &[("tv_sec", 2, 0, 0), ("tv_nsec", 2, 64, 0)],
        ); // 3
        b.composite(KIND_STRUCT, "file", 64, &[("f_inode", 2, 32 * 8, 0)]);
        b.composite(KIND_STRUCT, "super_block", 64, &[("s_dev", 1, 16 * 8, 0)]);
        let mut inode = vec![
            ("i_sb", 2, 40 * 8, 0),
            ("i_ino", 2, 64 * 8, 0),
            ("i_size", 2, 80 * 8, 0),
        ];
        inode.extend(mtime.iter().map(|&(n, t, off)| (n, t, off, 0)));
        b.composite(KIND_STRUCT, "inode", 256, &inode);
        Btf::parse(&b.build()).expect("valid sample")
    }

    #[test]
    fn file_id_offsets_with_split_mtime() {
        // Linux 6.11+: time64_t i_mtime_sec; ... u32 i_mtime_nsec.
        let btf = inode_btf(&[("i_mtime_sec", 2, 96 * 8), ("i_mtime_nsec", 1, 116 * 8)]);
        let report = kernel_offsets(&btf);
        let o = report.offsets;
        assert_eq!(
            (
                o.file_f_inode,
                o.inode_i_ino,
                o.inode_i_size,
                o.inode_i_sb,
                o.super_block_s_dev,
                o.inode_i_mtime_sec,
                o.inode_i_mtime_nsec
            ),
            (32, 64, 80, 40, 16, 96, 116)
        );
        assert!(
            !report
                .missing
                .iter()
                .any(|m| m.starts_with("inode offsets")),
            "{:?}",
            report.missing
        );
        // The group also needs the process offsets (mm->exe_file), absent from this sample.
        assert_eq!(o.file_id_valid, 0);
    }

    #[test]
    fn file_id_offsets_with_timespec64_mtime() {
        // Linux 6.6 to 6.10 (`__i_mtime`) and older (`i_mtime`): struct timespec64 at 96, its
        // 64-bit tv_nsec at +8, read as a u32 in the half that holds the value.
        let low_half = if cfg!(target_endian = "big") { 4 } else { 0 };
        for name in ["__i_mtime", "i_mtime"] {
            let btf = inode_btf(&[(name, 3, 96 * 8)]);
            assert_eq!(
                mtime_offsets(&btf).expect(name),
                (96, 104 + low_half),
                "{name}"
            );
        }
        // No mtime at all: the group is missing, and says so.
        let report = kernel_offsets(&inode_btf(&[]));
        assert!(
            report
                .missing
                .iter()
                .any(|m| m.starts_with("inode offsets") && m.contains("i_mtime")),
            "{:?}",
            report.missing
        );
        // A bitfield or odd-sized nanoseconds member is refused, not misread.
        let btf = inode_btf(&[("i_mtime_sec", 2, 96 * 8), ("i_mtime_nsec", 1, 116 * 8 + 4)]);
        assert!(matches!(mtime_offsets(&btf), Err(BtfError::Shape { .. })));
    }

    /// Against the running kernel: offsets must match what pahole/the kernel headers say for
    /// Linux 6.x `x86_64`, where these particular members have not moved in years.
    #[test]
    fn vmlinux_offsets_match_the_kernel() {
        let Ok(btf) = Btf::from_sys_fs() else {
            eprintln!("SKIPPED: {VMLINUX_BTF} is not readable on this host");
            return;
        };
        // struct qstr { union { struct { u32 hash; u32 len; }; u64 hash_len; }; const char *name; }
        assert_eq!(btf.member_offset("qstr", "len").expect("qstr.len"), 4);
        assert_eq!(btf.member_offset("qstr", "name").expect("qstr.name"), 8);
        // struct path { struct vfsmount *mnt; struct dentry *dentry; }
        assert_eq!(btf.member_offset("path", "mnt").expect("path.mnt"), 0);
        assert_eq!(btf.member_offset("path", "dentry").expect("path.dentry"), 8);
        // struct sock_common starts with the address pair, then the port pair.
        assert_eq!(
            btf.member_offset("sock_common", "skc_daddr")
                .expect("skc_daddr"),
            0
        );
        assert_eq!(
            btf.member_offset("sock_common", "skc_rcv_saddr")
                .expect("skc_rcv_saddr"),
            4
        );
        assert_eq!(
            btf.member_offset("sock_common", "skc_dport")
                .expect("skc_dport"),
            12
        );
        assert_eq!(
            btf.member_offset("sock_common", "skc_num")
                .expect("skc_num"),
            14
        );
        assert_eq!(
            btf.member_offset("sock_common", "skc_family")
                .expect("skc_family"),
            16
        );
        let report = kernel_offsets(&btf);
        assert!(report.missing.is_empty(), "missing: {:?}", report.missing);
        let o = report.offsets;
        assert_eq!((o.valid, o.sock_valid, o.threads_valid), (1, 1, 1));
        // skc_state follows skc_family (u16 at 16); d_hash follows d_flags and d_seq.
        assert_eq!(o.skc_state, 18);
        assert_eq!(o.dentry_d_hash, 8);
        assert_eq!(
            o.sk_protocol_bits, 16,
            "sk_protocol is a u16 since Linux 5.6"
        );
        // The mount's vfsmount sits after the hash node and two pointers.
        assert!(o.mount_mnt >= 16 && o.mount_mnt_parent < o.mount_mnt);
        assert_eq!(o.file_id_valid, 1);
        // super_block starts with its list_head, then s_dev.
        assert_eq!(o.super_block_s_dev, 16);
        assert!(o.inode_i_mtime_nsec > o.inode_i_mtime_sec, "{o:?}");
        // struct cred: the usage count, then uid, gid, suid, sgid, euid (4 bytes each).
        assert_eq!(o.cred_valid, 1);
        assert_eq!(
            o.cred_euid,
            btf.member_offset("cred", "uid").expect("cred.uid") + 16
        );
    }
}
