//! PyTorch's `torch.save` files (the zip format of PyTorch ≥ 1.6) read as a state dict of tensors,
//! without executing anything. A `.pt` file is a ZIP archive (`formats::zip`) holding
//! `PREFIX/data.pkl`, a pickle of the saved object, and one entry `PREFIX/data/KEY` per storage.
//! The pickle is not run by Python's unpickler: this module interprets its opcodes (protocols 2–5,
//! as `pickle.py` defines them) on a stack machine that can build only plain values (None, bools,
//! ints, floats, strings, bytes, tuples, lists, dicts, sets) and calls nothing but the handful of
//! constructors a state dict is made of — `collections.OrderedDict`,
//! `torch._utils._rebuild_tensor_v2` / `_rebuild_tensor` / `_rebuild_parameter`
//! (`_with_state`), the `torch.*Storage` types named by persistent ids and `torch.Size` — the same
//! allowance `torch.load(weights_only=True)` makes (`torch/_weights_only_unpickler.py`). Any other
//! `GLOBAL` (`os.system`, `builtins.eval`, a user's class) is refused with its name, so a malicious
//! checkpoint is an error message, never code run.
//!
//! Containers live in an arena and memo entries refer to them by index, as Python's memo holds
//! references: a `BINGET` copies a handle, never a subtree, so a pickle that references one list
//! from many places cannot blow up memory. A tensor is `(storage, offset, size, stride)`; its
//! extent is checked against its storage, and the storage's declared element count against the
//! archive entry, before any value is read.

use std::collections::BTreeMap;
use std::rc::Rc;

use super::zip::ZipArchive;
use super::FormatError;

/// A storage's element type, from its `torch.*Storage` class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TorchDtype {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl TorchDtype {
    fn from_storage(name: &str) -> Option<TorchDtype> {
        Some(match name {
            "DoubleStorage" => TorchDtype::F64,
            "FloatStorage" => TorchDtype::F32,
            "HalfStorage" => TorchDtype::F16,
            "BFloat16Storage" => TorchDtype::BF16,
            "LongStorage" => TorchDtype::I64,
            "IntStorage" => TorchDtype::I32,
            "ShortStorage" => TorchDtype::I16,
            "CharStorage" => TorchDtype::I8,
            "ByteStorage" => TorchDtype::U8,
            "BoolStorage" => TorchDtype::Bool,
            _ => return None,
        })
    }

    pub fn bytes(self) -> usize {
        match self {
            TorchDtype::F64 | TorchDtype::I64 => 8,
            TorchDtype::F32 | TorchDtype::I32 => 4,
            TorchDtype::F16 | TorchDtype::BF16 | TorchDtype::I16 => 2,
            TorchDtype::I8 | TorchDtype::U8 | TorchDtype::Bool => 1,
        }
    }

    /// The little-endian value at the start of `b` (at least [`Self::bytes`] long), as f32.
    fn read(self, b: &[u8]) -> f32 {
        match self {
            TorchDtype::F64 => f64::from_le_bytes(b[..8].try_into().expect("8 bytes")) as f32,
            TorchDtype::F32 => f32::from_le_bytes(b[..4].try_into().expect("4 bytes")),
            TorchDtype::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
            TorchDtype::BF16 => half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
            TorchDtype::I64 => i64::from_le_bytes(b[..8].try_into().expect("8 bytes")) as f32,
            TorchDtype::I32 => i32::from_le_bytes(b[..4].try_into().expect("4 bytes")) as f32,
            TorchDtype::I16 => i16::from_le_bytes([b[0], b[1]]) as f32,
            TorchDtype::I8 => b[0] as i8 as f32,
            TorchDtype::U8 => b[0] as f32,
            TorchDtype::Bool => (b[0] != 0) as u8 as f32,
        }
    }
}

/// One tensor of a state dict: a strided view of a storage in the archive.
#[derive(Debug, Clone)]
pub struct TorchTensor<'a> {
    pub dtype: TorchDtype,
    pub shape: Vec<usize>,
    stride: Vec<usize>,
    offset: usize,
    storage: Rc<std::borrow::Cow<'a, [u8]>>,
}

impl TorchTensor<'_> {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values in row-major order of `shape`, widened (or, for f64 and integers, converted) to
    /// f32. Strided views (a saved `W.T`) are gathered.
    pub fn to_f32(&self) -> Vec<f32> {
        let size = self.dtype.bytes();
        let mut out = Vec::with_capacity(self.len());
        if self.is_empty() {
            return out;
        }
        let mut index = vec![0usize; self.shape.len()];
        loop {
            let at = self.offset + index.iter().zip(&self.stride).map(|(i, s)| i * s).sum::<usize>();
            out.push(self.dtype.read(&self.storage[at * size..]));
            // The next index in row-major order; done when the first dimension wraps.
            let mut d = self.shape.len();
            loop {
                if d == 0 {
                    return out;
                }
                d -= 1;
                index[d] += 1;
                if index[d] < self.shape[d] {
                    break;
                }
                index[d] = 0;
            }
        }
    }
}

/// A pickled value. Containers are handles into the unpickler's arena.
#[derive(Debug, Clone)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// A float or a bytes object: parsed past, their values never needed.
    Float,
    Str(Rc<str>),
    Bytes,
    /// A tuple, list, dict or set, by arena index.
    Container(usize),
    /// One of the allowed callables or classes.
    Global(Global),
    /// A storage named by a persistent id: its dtype, and its archive key and element count.
    Storage {
        dtype: TorchDtype,
        key: Rc<str>,
        numel: usize,
    },
    Tensor(usize),
}

#[derive(Debug, Clone)]
enum Container {
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// Insertion-ordered, as Python's dicts (keys compared as strings or ints).
    Dict(Vec<(Value, Value)>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildTensor,
    RebuildParameter,
    RebuildParameterWithState,
    Size,
    StorageType(TorchDtype),
}

impl Global {
    /// The allowed `module.name`s; everything else is refused.
    fn lookup(module: &str, name: &str) -> Option<Global> {
        Some(match (module, name) {
            ("collections", "OrderedDict") => Global::OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
            ("torch._utils", "_rebuild_tensor") => Global::RebuildTensor,
            ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
            ("torch._utils", "_rebuild_parameter_with_state") => Global::RebuildParameterWithState,
            ("torch", "Size") => Global::Size,
            ("torch", storage) => Global::StorageType(TorchDtype::from_storage(storage)?),
            _ => return None,
        })
    }
}

/// Stack entries: values, or the marks MARK pushes.
#[derive(Debug)]
enum Slot {
    Value(Value),
    Mark,
}

struct Unpickler<'p, 'a> {
    file: &'p str,
    code: &'p [u8],
    at: usize,
    stack: Vec<Slot>,
    memo: BTreeMap<u32, Value>,
    arena: Vec<Container>,
    tensors: Vec<TorchTensor<'a>>,
    /// Reads a storage's bytes from the archive, once per key.
    storages: BTreeMap<Rc<str>, Rc<std::borrow::Cow<'a, [u8]>>>,
    archive: &'p ZipArchive<'a>,
    prefix: &'p str,
}

/// The most values the pickle may create (containers plus tensors): far above any state dict's,
/// far below what would exhaust memory.
const MAX_OBJECTS: usize = 1 << 22;

impl<'p, 'a> Unpickler<'p, 'a> {
    fn err(&self, msg: impl Into<String>) -> FormatError {
        FormatError::Archive { file: format!("{}/data.pkl", self.file), msg: format!("{} (at byte {})", msg.into(), self.at) }
    }

    fn take(&mut self, n: usize) -> Result<&'p [u8], FormatError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.code.len()).ok_or_else(|| self.err("the pickle is truncated"))?;
        let bytes = &self.code[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8, FormatError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    /// `n` more bytes, where `n` came from the pickle: checked against what is left first.
    fn take_len(&mut self, n: u64) -> Result<&'p [u8], FormatError> {
        let n = usize::try_from(n).map_err(|_| self.err("a length larger than the file"))?;
        self.take(n)
    }

    fn line(&mut self) -> Result<&'p str, FormatError> {
        let rest = &self.code[self.at..];
        let end = rest.iter().position(|&b| b == b'\n').ok_or_else(|| self.err("the pickle is truncated (a line without its end)"))?;
        let line = std::str::from_utf8(&rest[..end]).map_err(|_| self.err("a GLOBAL name that is not UTF-8"))?;
        self.at += end + 1;
        Ok(line)
    }

    fn utf8(&self, bytes: &[u8]) -> Result<Value, FormatError> {
        std::str::from_utf8(bytes).map(|s| Value::Str(s.into())).map_err(|_| self.err("a string that is not valid UTF-8"))
    }

    fn push(&mut self, v: Value) {
        self.stack.push(Slot::Value(v));
    }

    fn pop(&mut self) -> Result<Value, FormatError> {
        match self.stack.pop() {
            Some(Slot::Value(v)) => Ok(v),
            Some(Slot::Mark) => Err(self.err("a MARK where a value was expected")),
            None => Err(self.err("the stack is empty where a value was expected")),
        }
    }

    fn top(&self) -> Result<&Value, FormatError> {
        match self.stack.last() {
            Some(Slot::Value(v)) => Ok(v),
            _ => Err(self.err("no value on the stack")),
        }
    }

    /// The values above the topmost MARK, which is removed.
    fn pop_mark(&mut self) -> Result<Vec<Value>, FormatError> {
        let mark = self.stack.iter().rposition(|s| matches!(s, Slot::Mark)).ok_or_else(|| self.err("no MARK on the stack"))?;
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        Ok(items.into_iter().map(|s| if let Slot::Value(v) = s { v } else { unreachable!("after the topmost mark") }).collect())
    }

    fn alloc(&mut self, c: Container) -> Result<Value, FormatError> {
        if self.arena.len() + self.tensors.len() >= MAX_OBJECTS {
            return Err(self.err(format!("more than {MAX_OBJECTS} objects")));
        }
        self.arena.push(c);
        Ok(Value::Container(self.arena.len() - 1))
    }

    fn tuple(&self, v: &Value) -> Option<&[Value]> {
        match v {
            Value::Container(i) => match &self.arena[*i] {
                Container::Tuple(items) => Some(items),
                _ => None,
            },
            _ => None,
        }
    }

    /// Appends `items` to the list (or set) on top of the stack.
    fn extend_top(&mut self, items: Vec<Value>) -> Result<(), FormatError> {
        let Value::Container(i) = *self.top()? else { return Err(self.err("APPEND to something that is not a list")) };
        match &mut self.arena[i] {
            Container::List(list) => list.extend(items),
            _ => return Err(self.err("APPEND to something that is not a list")),
        }
        Ok(())
    }

    /// Sets `pairs` in the dict on top of the stack.
    fn set_items(&mut self, flat: Vec<Value>) -> Result<(), FormatError> {
        if !flat.len().is_multiple_of(2) {
            return Err(self.err("SETITEMS with an odd number of values"));
        }
        let Value::Container(i) = *self.top()? else { return Err(self.err("SETITEM on something that is not a dict")) };
        let Container::Dict(dict) = &mut self.arena[i] else { return Err(self.err("SETITEM on something that is not a dict")) };
        let mut it = flat.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            match dict.iter_mut().find(|(existing, _)| same_key(existing, &k)) {
                Some(slot) => slot.1 = v,
                None => dict.push((k, v)),
            }
        }
        Ok(())
    }

    fn global(&self, module: &str, name: &str) -> Result<Value, FormatError> {
        Global::lookup(module, name).map(Value::Global).ok_or_else(|| {
            self.err(format!(
                "the pickle asks for '{module}.{name}', which is not a tensor or a plain container; saelab never runs code from a pickle, so it does not load this file"
            ))
        })
    }

    fn int(&self, v: &Value, what: &str) -> Result<usize, FormatError> {
        match v {
            Value::Int(i) if *i >= 0 => Ok(*i as usize),
            Value::Bool(b) => Ok(*b as usize),
            _ => Err(self.err(format!("{what} is not a non-negative integer"))),
        }
    }

    fn ints(&self, v: &Value, what: &str) -> Result<Vec<usize>, FormatError> {
        let items = self.tuple(v).ok_or_else(|| self.err(format!("{what} is not a tuple")))?;
        items.iter().map(|i| self.int(i, what)).collect()
    }

    /// `_rebuild_tensor_v2(storage, storage_offset, size, stride, ...)`, checked against the storage.
    fn rebuild_tensor(&mut self, args: &[Value]) -> Result<Value, FormatError> {
        let [storage, offset, size, stride, ..] = args else { return Err(self.err("_rebuild_tensor with too few arguments")) };
        let Value::Storage { dtype, key, numel } = storage else { return Err(self.err("_rebuild_tensor without a storage")) };
        let (offset, shape, stride) =
            (self.int(offset, "a tensor's offset")?, self.ints(size, "a tensor's size")?, self.ints(stride, "a tensor's stride")?);
        if shape.len() != stride.len() {
            return Err(self.err(format!("a tensor of size {shape:?} with stride {stride:?}")));
        }
        let len = shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or_else(|| self.err(format!("a tensor of size {shape:?} overflows")))?;
        if len > 0 {
            // The last element a view reads, which must lie in the storage; a view that would read
            // more elements than the storage has (an expanded, overlapping one) is refused too, so
            // gathering never allocates more than the file holds.
            let last = shape.iter().zip(&stride).try_fold(offset, |at, (&d, &s)| (d - 1).checked_mul(s).and_then(|x| at.checked_add(x)));
            if last.is_none_or(|last| last >= *numel) || len > *numel {
                return Err(self.err(format!(
                    "a tensor of size {shape:?}, stride {stride:?} at offset {offset} reads past its storage of {numel} elements"
                )));
            }
        }
        let bytes = match self.storages.get(key) {
            Some(b) => b.clone(),
            None => {
                let entry = format!("{}/data/{key}", self.prefix);
                let data =
                    self.archive.read(&entry)?.ok_or_else(|| self.err(format!("the storage '{entry}' is missing from the archive")))?;
                let b = Rc::new(data);
                self.storages.insert(key.clone(), b.clone());
                b
            }
        };
        let need = numel.checked_mul(dtype.bytes());
        if need.is_none_or(|n| n > bytes.len()) {
            return Err(self.err(format!(
                "storage '{key}' declares {numel} values of {} bytes but holds {} bytes",
                dtype.bytes(),
                bytes.len()
            )));
        }
        if self.arena.len() + self.tensors.len() >= MAX_OBJECTS {
            return Err(self.err(format!("more than {MAX_OBJECTS} objects")));
        }
        self.tensors.push(TorchTensor { dtype: *dtype, shape, stride, offset, storage: bytes });
        Ok(Value::Tensor(self.tensors.len() - 1))
    }

    fn call(&mut self, f: Value, args: Value) -> Result<Value, FormatError> {
        let Value::Global(g) = f else { return Err(self.err("REDUCE of something that is not callable")) };
        let args = self.tuple(&args).ok_or_else(|| self.err("REDUCE whose arguments are not a tuple"))?.to_vec();
        match g {
            Global::OrderedDict if args.is_empty() => self.alloc(Container::Dict(Vec::new())),
            Global::RebuildTensorV2 | Global::RebuildTensor => self.rebuild_tensor(&args),
            Global::RebuildParameter | Global::RebuildParameterWithState => match args.first() {
                Some(t @ Value::Tensor(_)) => Ok(t.clone()),
                _ => Err(self.err("_rebuild_parameter without a tensor")),
            },
            Global::Size => match args.first() {
                Some(v) if self.tuple(v).is_some() => Ok(v.clone()),
                _ => Err(self.err("torch.Size without a tuple")),
            },
            other => Err(self.err(format!("{other:?} called with arguments it does not take"))),
        }
    }

    /// A persistent id: `('storage', torch.XStorage, key, location, numel)`.
    fn persistent(&mut self, pid: Value) -> Result<Value, FormatError> {
        let fields = self.tuple(&pid).ok_or_else(|| self.err("a persistent id that is not a tuple"))?.to_vec();
        match fields.as_slice() {
            [Value::Str(kind), Value::Global(Global::StorageType(dtype)), key, _location, numel] if &**kind == "storage" => {
                let key: Rc<str> = match key {
                    Value::Str(s) if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => s.clone(),
                    _ => return Err(self.err("a storage key that is not a plain name")),
                };
                Ok(Value::Storage { dtype: *dtype, key, numel: self.int(numel, "a storage's size")? })
            }
            _ => Err(self.err("a persistent id that is not a tensor storage")),
        }
    }

    fn run(&mut self) -> Result<Value, FormatError> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if !(2..=5).contains(&proto) {
                        return Err(self.err(format!("pickle protocol {proto} (only 2 to 5 are read)")));
                    }
                }
                0x95 => {
                    self.u64()?; // FRAME: a length hint only
                }
                b'.' => return self.pop(),
                b'(' => self.stack.push(Slot::Mark),
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.push(v);
                }
                b'N' => self.push(Value::None),
                0x88 => self.push(Value::Bool(true)),
                0x89 => self.push(Value::Bool(false)),
                b'J' => {
                    let v = self.u32()? as i32;
                    self.push(Value::Int(v.into()));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v.into()));
                }
                b'M' => {
                    let b = self.take(2)?;
                    self.push(Value::Int(u16::from_le_bytes([b[0], b[1]]).into()));
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a { u64::from(self.u8()?) } else { u64::from(self.u32()?) };
                    let b = self.take_len(n)?;
                    if b.len() > 8 {
                        return Err(self.err("an integer wider than 64 bits"));
                    }
                    // Little-endian two's complement, sign-extended.
                    let fill = if b.last().is_some_and(|&x| x & 0x80 != 0) { 0xff } else { 0 };
                    let mut w = [fill; 8];
                    w[..b.len()].copy_from_slice(b);
                    self.push(Value::Int(i64::from_le_bytes(w)));
                }
                b'G' => {
                    self.take(8)?;
                    self.push(Value::Float);
                }
                b'X' | 0x8c | 0x8d => {
                    let n = match op {
                        b'X' => u64::from(self.u32()?),
                        0x8c => u64::from(self.u8()?),
                        _ => self.u64()?,
                    };
                    let b = self.take_len(n)?;
                    let v = self.utf8(b)?;
                    self.push(v);
                }
                b'T' | b'U' => {
                    // Python 2 str: bytes, read as Latin-1 text.
                    let n = if op == b'T' { u64::from(self.u32()?) } else { u64::from(self.u8()?) };
                    let text: String = self.take_len(n)?.iter().map(|&b| b as char).collect();
                    self.push(Value::Str(text.into()));
                }
                b'B' | b'C' | 0x8e => {
                    let n = match op {
                        b'B' => u64::from(self.u32()?),
                        b'C' => u64::from(self.u8()?),
                        _ => self.u64()?,
                    };
                    self.take_len(n)?;
                    self.push(Value::Bytes);
                }
                b')' => {
                    let v = self.alloc(Container::Tuple(Vec::new()))?;
                    self.push(v);
                }
                b't' => {
                    let items = self.pop_mark()?;
                    let v = self.alloc(Container::Tuple(items))?;
                    self.push(v);
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = (0..n).map(|_| self.pop()).collect::<Result<Vec<_>, _>>()?;
                    items.reverse();
                    let v = self.alloc(Container::Tuple(items))?;
                    self.push(v);
                }
                b']' | 0x8f => {
                    // A set is kept as a list of its items.
                    let v = self.alloc(Container::List(Vec::new()))?;
                    self.push(v);
                }
                b'l' | 0x91 => {
                    let items = self.pop_mark()?;
                    let v = self.alloc(Container::List(items))?;
                    self.push(v);
                }
                b'}' => {
                    let v = self.alloc(Container::Dict(Vec::new()))?;
                    self.push(v);
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let v = self.alloc(Container::Dict(Vec::new()))?;
                    self.push(v);
                    self.set_items(items)?;
                }
                b'a' => {
                    let v = self.pop()?;
                    self.extend_top(vec![v])?;
                }
                b'e' | 0x90 => {
                    let items = self.pop_mark()?;
                    self.extend_top(items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?;
                }
                b'q' | b'r' | 0x94 => {
                    let key = match op {
                        b'q' => u32::from(self.u8()?),
                        b'r' => self.u32()?,
                        _ => self.memo.len() as u32,
                    };
                    let v = self.top()?.clone();
                    self.memo.insert(key, v);
                }
                b'h' | b'j' => {
                    let key = if op == b'h' { u32::from(self.u8()?) } else { self.u32()? };
                    let v = self.memo.get(&key).cloned().ok_or_else(|| self.err(format!("memo entry {key} read before it was written")))?;
                    self.push(v);
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let v = self.global(module, name)?;
                    self.push(v);
                }
                0x93 => {
                    let (name, module) = (self.pop()?, self.pop()?);
                    let (Value::Str(module), Value::Str(name)) = (module, name) else {
                        return Err(self.err("STACK_GLOBAL without two strings"));
                    };
                    let v = self.global(&module, &name)?;
                    self.push(v);
                }
                b'R' => {
                    let args = self.pop()?;
                    let f = self.pop()?;
                    let v = self.call(f, args)?;
                    self.push(v);
                }
                0x81 => {
                    // NEWOBJ: `cls.__new__(cls, *args)`; only an OrderedDict is built this way.
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    if !matches!(cls, Value::Global(Global::OrderedDict)) {
                        return Err(self.err("NEWOBJ of a class other than OrderedDict"));
                    }
                    let v = self.call(cls, args)?;
                    self.push(v);
                }
                b'b' => {
                    // BUILD sets an object's state: a state dict's `_metadata` attribute (the
                    // modules' versions), which is not needed to read the tensors.
                    self.pop()?;
                    if !matches!(self.top()?, Value::Container(_)) {
                        return Err(self.err("BUILD on something other than a container"));
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent(pid)?;
                    self.push(v);
                }
                other => {
                    return Err(self.err(format!(
                    "pickle opcode 0x{other:02x} is not one a tensor state dict uses (saelab reads protocols 2 to 5 and never runs code)"
                )))
                }
            }
        }
    }
}

fn same_key(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        _ => false,
    }
}

/// The tensors of a `torch.save`d dict (a `state_dict()` or a plain dict), by key. Entries that
/// are not tensors (ints, strings, nested dicts of settings) are skipped; nested dicts are not
/// searched.
pub fn read_state_dict<'a>(file: &str, bytes: &'a [u8]) -> Result<BTreeMap<String, TorchTensor<'a>>, FormatError> {
    let err = |msg: String| FormatError::Archive { file: file.to_string(), msg };
    if !bytes.starts_with(b"PK\x03\x04") {
        return Err(err(if bytes.starts_with(&[0x80]) {
            "a PyTorch file in the legacy format of PyTorch before 1.6 (a bare pickle, not a zip archive), which saelab does not read: re-save it with torch.save in a current PyTorch".into()
        } else {
            "not a PyTorch file (torch.save writes a zip archive, which starts with 'PK')".into()
        }));
    }
    let archive = ZipArchive::parse(file, bytes)?;
    let pickles: Vec<&str> = archive.names().filter(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1).collect();
    let prefix = match pickles.as_slice() {
        [one] => one.trim_end_matches("/data.pkl").to_string(),
        [] if archive.names().any(|n| n.ends_with("constants.pkl")) => {
            return Err(err("a TorchScript archive (torch.jit.save), not a torch.save file of tensors".into()))
        }
        [] => return Err(err("a zip archive without the PREFIX/data.pkl that torch.save writes".into())),
        _ => return Err(err(format!("several pickles ({}): not one torch.save file", pickles.join(", ")))),
    };
    if let Some(order) = archive.read(&format!("{prefix}/byteorder"))? {
        if &*order != b"little" {
            return Err(err(format!("byte order '{}' (only little-endian files are read)", String::from_utf8_lossy(&order))));
        }
    }
    let code = archive.read(&format!("{prefix}/data.pkl"))?.expect("a listed entry");
    let mut up = Unpickler {
        file,
        code: &code,
        at: 0,
        stack: Vec::new(),
        memo: BTreeMap::new(),
        arena: Vec::new(),
        tensors: Vec::new(),
        storages: BTreeMap::new(),
        archive: &archive,
        prefix: &prefix,
    };
    let root = up.run()?;
    let Value::Container(i) = root else { return Err(err("the saved object is not a dict of tensors".into())) };
    let Container::Dict(items) = &up.arena[i] else { return Err(err("the saved object is not a dict of tensors".into())) };
    let mut out = BTreeMap::new();
    for (k, v) in items {
        if let (Value::Str(k), Value::Tensor(t)) = (k, v) {
            out.insert(k.to_string(), up.tensors[*t].clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::zip::write_stored;

    /// A pickle's opcodes for `{name: tensor}` over storage "0" (f32), as torch.save writes them.
    fn state_dict_pickle(entries: &[(&str, &[usize], &[usize], usize)], numel: usize) -> Vec<u8> {
        // An int as BININT, or as an 8-byte LONG1 when it does not fit in an i32.
        let int = |p: &mut Vec<u8>, v: usize| match i32::try_from(v) {
            Ok(v) => {
                p.push(b'J');
                p.extend(v.to_le_bytes());
            }
            Err(_) => {
                p.extend([0x8a, 8]);
                p.extend((v as u64).to_le_bytes());
            }
        };
        let mut p = vec![0x80, 2];
        p.extend(b"ccollections\nOrderedDict\nq\x00)Rq\x01(");
        for (name, size, stride, offset) in entries {
            p.push(b'X');
            p.extend((name.len() as u32).to_le_bytes());
            p.extend(name.as_bytes());
            p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
            p.extend(b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpu");
            int(&mut p, numel);
            p.extend(b"tQ");
            int(&mut p, *offset);
            for dims in [size, stride] {
                p.push(b'(');
                for d in dims.iter() {
                    int(&mut p, *d);
                }
                p.push(b't');
            }
            p.extend(b"\x89ccollections\nOrderedDict\n)Rtq\x02R");
        }
        p.extend(b"u}q\x03X\x09\x00\x00\x00_metadatah\x01sb.");
        p
    }

    fn archive(pickle: &[u8], storage: &[f32]) -> Vec<u8> {
        let data: Vec<u8> = storage.iter().flat_map(|v| v.to_le_bytes()).collect();
        write_stored(&[("archive/data.pkl", pickle), ("archive/byteorder", b"little"), ("archive/data/0", &data)])
    }

    #[test]
    fn reads_tensors_and_strided_views() {
        let storage: Vec<f32> = (0..12).map(|i| i as f32).collect();
        // A [3, 4] matrix, its transpose as a view, and a row from offset 8.
        let p = state_dict_pickle(&[("m", &[3, 4], &[4, 1], 0), ("t", &[4, 3], &[1, 4], 0), ("row", &[4], &[1], 8)], 12);
        let bytes = archive(&p, &storage);
        let sd = read_state_dict("ae.pt", &bytes).unwrap();
        assert_eq!(sd["m"].shape, [3, 4]);
        assert_eq!(sd["m"].to_f32(), storage);
        assert_eq!(sd["t"].to_f32(), [0., 4., 8., 1., 5., 9., 2., 6., 10., 3., 7., 11.]);
        assert_eq!(sd["row"].to_f32(), [8., 9., 10., 11.]);
    }

    #[test]
    fn refuses_code_and_malformed_pickles() {
        let storage = [0.0f32; 4];
        let evil = b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.";
        let e = read_state_dict("evil.pt", &archive(evil, &storage)).unwrap_err().to_string();
        assert!(e.contains("'os.system'") && e.contains("never runs code"), "{e}");
        let e = read_state_dict("evil.pt", &archive(b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93.", &storage)).unwrap_err().to_string();
        assert!(e.contains("'builtins.eval'"), "{e}");

        // A view past its storage, and a storage shorter than it declares.
        let p = state_dict_pickle(&[("m", &[3, 4], &[4, 1], 1)], 12);
        let e = read_state_dict("a.pt", &archive(&p, &[0.0; 12])).unwrap_err().to_string();
        assert!(e.contains("reads past its storage of 12 elements"), "{e}");
        let p = state_dict_pickle(&[("m", &[3, 4], &[4, 1], 0)], 12);
        let e = read_state_dict("a.pt", &archive(&p, &[0.0; 11])).unwrap_err().to_string();
        assert!(e.contains("declares 12 values of 4 bytes but holds 44 bytes"), "{e}");
        // A size whose product overflows, and one as large as the file allows but expanded by a
        // zero stride: refused before anything is allocated.
        let p = state_dict_pickle(&[("m", &[1 << 31, 1 << 31, 1 << 31], &[0, 0, 0], 0)], 12);
        let e = read_state_dict("a.pt", &archive(&p, &[0.0; 12])).unwrap_err().to_string();
        assert!(e.contains("overflows"), "{e}");
        let p = state_dict_pickle(&[("m", &[1000], &[0], 0)], 12);
        assert!(read_state_dict("a.pt", &archive(&p, &[0.0; 12])).unwrap_err().to_string().contains("reads past"));

        // Every truncation of a valid pickle is an error, never a panic.
        let p = state_dict_pickle(&[("m", &[3, 4], &[4, 1], 0)], 12);
        for n in 0..p.len() {
            assert!(read_state_dict("a.pt", &archive(&p[..n], &[0.0; 12])).is_err(), "truncated at {n}");
        }
        // Every single-byte corruption: an error or a result, never a panic.
        for i in 0..p.len() {
            let mut q = p.clone();
            q[i] ^= 0x5a;
            let _ = read_state_dict("a.pt", &archive(&q, &[0.0; 12]));
        }
        // A memo reference read before it is written; a billion-laughs nest of shared lists.
        assert!(read_state_dict("a.pt", &archive(b"\x80\x02h\x07.", &[])).unwrap_err().to_string().contains("memo entry 7"));
        let mut laughs = b"\x80\x02]q\x00".to_vec();
        for _ in 0..60 {
            laughs.extend(b"(h\x00h\x00lq\x00");
        }
        laughs.extend(b"0}.");
        assert!(read_state_dict("a.pt", &archive(&laughs, &[])).unwrap().is_empty());
    }

    #[test]
    fn names_what_the_file_is_when_not_a_torch_save_zip() {
        let e = read_state_dict("old.pt", b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.").unwrap_err().to_string();
        assert!(e.contains("legacy format"), "{e}");
        assert!(read_state_dict("x.pt", b"hello").unwrap_err().to_string().contains("not a PyTorch file"));
        let z = write_stored(&[("model/constants.pkl", b".")]);
        assert!(read_state_dict("j.pt", &z).unwrap_err().to_string().contains("TorchScript"));
        let z = write_stored(&[("a/data.pkl", b"\x80\x02}."), ("a/byteorder", b"big")]);
        assert!(read_state_dict("b.pt", &z).unwrap_err().to_string().contains("byte order 'big'"));
    }
}
