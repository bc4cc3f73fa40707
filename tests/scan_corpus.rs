//! The format scanner against files Python writes: Python's own `pickle` at
//! every protocol, and state dicts in the exact layouts `torch.save` writes
//! (the ZIP archive of 1.6+ and the legacy stream), made without torch by
//! pickling through stand-ins registered under torch's module names — what
//! lands in the bytes is the same `GLOBAL torch._utils _rebuild_tensor_v2`,
//! the same persistent ids and the same stored ZIP members. Beside them, the
//! hostile corpus: `os.system`, `builtins.eval`, `__reduce__` chains, pickles
//! nested in pickles, a malicious `data.pkl` inside a torch archive.
//!
//! Runs when `MODELREG_TEST_PYTHON` names a Python 3 (`bash .ci/run` sets it).

use std::collections::BTreeMap;
use std::process::Command;

use modelreg::scan::{FileFormat, Refusal, ScanLimits, scan};

const CORPUS: &str = r#"
import collections, io, os, pickle, struct, sys, types, zipfile, builtins

out = sys.argv[1]

# Stand-ins for torch, under torch's names, so the pickles name what torch's do.
torch = types.ModuleType("torch"); sys.modules["torch"] = torch
utils = types.ModuleType("torch._utils"); sys.modules["torch._utils"] = utils
torch._utils = utils
class FloatStorage: pass
FloatStorage.__module__ = "torch"; torch.FloatStorage = FloatStorage
def _rebuild_tensor_v2(*a): pass
_rebuild_tensor_v2.__module__ = "torch._utils"; utils._rebuild_tensor_v2 = _rebuild_tensor_v2

class Storage:
    def __init__(self, key, numel): self.key, self.numel = key, numel
class Tensor:
    def __init__(self, storage, shape): self.storage, self.shape = storage, shape
    def __reduce_ex__(self, proto):
        stride = tuple(int(__import__("math").prod(self.shape[i+1:])) for i in range(len(self.shape)))
        return (_rebuild_tensor_v2, (self.storage, 0, self.shape, stride, False, collections.OrderedDict()))

class TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", FloatStorage, obj.key, "cpu", obj.numel)
        return None

def state_dict():
    sd = collections.OrderedDict()
    sd["fc.weight"] = Tensor(Storage("0", 6), (2, 3))
    sd["fc.bias"] = Tensor(Storage("1", 2), (2,))
    sd._metadata = collections.OrderedDict([("", {"version": 1}), ("fc", {"version": 1})])
    return sd

def torch_pickle(obj, proto=2):
    buf = io.BytesIO(); TorchPickler(buf, protocol=proto).dump(obj); return buf.getvalue()

def write(name, data):
    with open(os.path.join(out, name), "wb") as f: f.write(data)

def torch_zip(name, data_pkl, extra=()):
    # torch.save since 1.6: stored members under one record prefix.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", data_pkl)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/data/0", b"\0" * 24)
        z.writestr("archive/data/1", b"\0" * 8)
        z.writestr("archive/version", "3\n")
        z.writestr("archive/.data/serialization_id", "1234567890")
        for n, d in extra: z.writestr(n, d)
    write(name, buf.getvalue())

# Benign.
for proto in range(0, 6):
    write(f"dict_p{proto}.pkl", pickle.dumps({"a": [1, 2.5, "x", b"y", None, True], "b": (1, 2)}, protocol=proto))
    write(f"ordered_p{proto}.pkl", pickle.dumps(collections.OrderedDict(a=1, b=[set([1]), bytearray(b"z"), complex(1, 2)]), protocol=proto))
for proto in (2, 3, 4, 5):
    torch_zip(f"state_dict_p{proto}.pt", torch_pickle(state_dict(), proto))
torch_zip("state_dict.bin", torch_pickle(state_dict()))
legacy = io.BytesIO()
for obj in (0x1950a86a20f9469cfc6c, 1001, {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}):
    pickle.dump(obj, legacy, protocol=2)
TorchPickler(legacy, protocol=2).dump(state_dict())
pickle.dump(["0", "1"], legacy, protocol=2)
legacy.write(struct.pack("<q", 6) + b"\0" * 24 + struct.pack("<q", 2) + b"\0" * 8)
write("legacy.pt", legacy.getvalue())

# Hostile.
class System:
    def __reduce__(self): return (os.system, ("echo pwned",))
class Eval:
    def __reduce__(self): return (builtins.eval, ("__import__('os').system('echo pwned')",))
class GetattrChain:
    # getattr(builtins, "exec") then a call on its result.
    def __reduce__(self): return (getattr, (builtins, "exec"))
class Nested:
    # A pickle inside a pickle: pickle.loads on bytes that call os.system.
    def __reduce__(self): return (pickle.loads, (pickle.dumps(System(), protocol=2),))
class Hidden:
    # A forbidden call tucked into an otherwise torch-shaped state dict.
    def __reduce__(self): return (_rebuild_tensor_v2, (System(),))
for proto in range(0, 6):
    write(f"system_p{proto}.pkl", pickle.dumps(System(), protocol=proto))
    write(f"eval_p{proto}.pkl", pickle.dumps(Eval(), protocol=proto))
try:
    write("getattr.pkl", pickle.dumps(GetattrChain(), protocol=2))
except Exception:
    # Modules do not pickle; write the same chain by hand.
    write("getattr.pkl", b"\x80\x02cbuiltins\ngetattr\ncbuiltins\nobject\nX\x04\x00\x00\x00exec\x86R)R.")
write("nested.pkl", pickle.dumps(Nested(), protocol=2))
sd = state_dict(); sd["evil"] = Hidden()
torch_zip("hidden.pt", torch_pickle(sd))
torch_zip("evil_zip.pt", pickle.dumps(System(), protocol=2))
write("renamed.safetensors", pickle.dumps(System(), protocol=4))
write("second_pickle.pkl", pickle.dumps({"ok": 1}, protocol=2) + pickle.dumps(System(), protocol=2))
torch_zip("torchscript.pt", torch_pickle(state_dict()), [("archive/constants.pkl", pickle.dumps((), protocol=2)), ("archive/code/__torch__.py", "def f(): pass")])
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("archive/data.pkl", b"N." + b"\0" * 100000)
write("deflated.pt", buf.getvalue())
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
    z.writestr("archive/../../evil.pkl", pickle.dumps(1, protocol=2))
write("traversal.pt", buf.getvalue())
"#;

#[cfg_attr(
    not(modelreg_pyclients),
    ignore = "needs MODELREG_TEST_PYTHON (bash .ci/run sets it)"
)]
#[test]
fn python_and_torch_shaped_files_get_the_expected_verdicts() {
    let python = std::env::var("MODELREG_TEST_PYTHON").expect("MODELREG_TEST_PYTHON");
    let dir = tempfile::tempdir().expect("tempdir");
    let status = Command::new(&python)
        .args(["-c", CORPUS])
        .arg(dir.path())
        .status()
        .expect("run python");
    assert!(status.success(), "the corpus script failed");
    let limits = ScanLimits::default();
    let verdicts: BTreeMap<String, _> = std::fs::read_dir(dir.path())
        .expect("read corpus")
        .map(|e| {
            let e = e.expect("entry");
            let name = e.file_name().into_string().expect("utf-8 name");
            let bytes = std::fs::read(e.path()).expect("read");
            let v = scan(&name, &bytes, &limits);
            (name, v)
        })
        .collect();
    assert_eq!(verdicts.len(), 39, "{} files", verdicts.len());

    let passed = |name: &str, format: FileFormat| {
        let v = &verdicts[name];
        assert_eq!((v.format, &v.refused), (format, &None), "{name}: {v}");
    };
    let global = |name: &str, module: &str, global: &str| {
        let v = &verdicts[name];
        match &v.refused {
            Some(Refusal::ForbiddenGlobal {
                module: m, name: n, ..
            }) => {
                // Protocols 0-2 spell `builtins` as Python 2 did.
                let m = if m == "__builtin__" {
                    "builtins"
                } else {
                    m.as_str()
                };
                assert_eq!((m, n.as_str()), (module, global), "{name}: {v}")
            }
            other => panic!("{name}: expected {module}.{global}, got {other:?}"),
        }
    };
    for proto in 0..6 {
        passed(&format!("dict_p{proto}.pkl"), FileFormat::Pickle);
        passed(&format!("ordered_p{proto}.pkl"), FileFormat::Pickle);
        // `os.system` is `posix.system` on the machines that run this.
        global(&format!("system_p{proto}.pkl"), "posix", "system");
        global(&format!("eval_p{proto}.pkl"), "builtins", "eval");
    }
    for proto in 2..6 {
        passed(&format!("state_dict_p{proto}.pt"), FileFormat::TorchZip);
    }
    passed("state_dict.bin", FileFormat::TorchZip);
    passed("legacy.pt", FileFormat::Pickle);

    global("getattr.pkl", "builtins", "getattr");
    global("nested.pkl", "pickle", "loads");
    global("hidden.pt", "posix", "system");
    assert_eq!(
        verdicts["hidden.pt"].member.as_deref(),
        Some("archive/data.pkl")
    );
    global("evil_zip.pt", "posix", "system");
    global("renamed.safetensors", "posix", "system");
    assert_eq!(verdicts["renamed.safetensors"].format, FileFormat::Pickle);
    global("second_pickle.pkl", "posix", "system");
    let archive = |name: &str, needle: &str| match &verdicts[name].refused {
        Some(Refusal::Archive { reason }) => assert!(reason.contains(needle), "{name}: {reason}"),
        other => panic!("{name}: {other:?}"),
    };
    archive("torchscript.pt", "TorchScript");
    archive("deflated.pt", "compressed");
    archive("traversal.pt", "member name");
}
