//! The globals a pickle may name: what PyTorch's weights-only unpickler
//! (`torch.load(weights_only=True)`, `torch/_weights_only_unpickler.py`)
//! allows by default, and nothing else.
//!
//! An allowlist, not a denylist: a global is refused unless it is named here.
//! Python 2 module names that pickle protocols 0-2 may carry (`__builtin__`,
//! `copy_reg`) are mapped as Python's unpickler maps them before the check.

/// Whether `module.name` may appear in a pickle.
pub(super) fn is_allowed(module: &str, name: &str) -> bool {
    let module = match module {
        "__builtin__" => "builtins",
        m => m,
    };
    match module {
        "collections" => matches!(name, "OrderedDict" | "Counter"),
        "torch.nn.parameter" => name == "Parameter",
        "torch.serialization" => name == "_get_layout",
        "_codecs" => name == "encode",
        "builtins" => matches!(name, "bytearray" | "set" | "complex"),
        "torch._tensor" => name == "_rebuild_from_type_v2",
        "torch._utils" => REBUILD.contains(&name),
        "torch.storage" => matches!(name, "TypedStorage" | "UntypedStorage"),
        "torch" => {
            matches!(name, "Size" | "Tensor" | "device" | "UntypedStorage")
                || DTYPES.contains(&name)
                || QSCHEMES.contains(&name)
                || typed_class(name, "Tensor")
                || typed_class(name, "Storage")
        }
        "torch.cuda" => typed_class(name, "Tensor") || typed_class(name, "Storage"),
        "torch.sparse" | "torch.cuda.sparse" => typed_class(name, "Tensor"),
        _ => false,
    }
}

/// The tensor rebuild functions of `torch._utils`.
const REBUILD: &[&str] = &[
    "_rebuild_parameter",
    "_rebuild_parameter_with_state",
    "_rebuild_qtensor",
    "_rebuild_tensor",
    "_rebuild_tensor_v2",
    "_rebuild_tensor_v3",
    "_rebuild_sparse_tensor",
    "_rebuild_meta_tensor_no_storage",
    "_rebuild_wrapper_subclass",
    "_rebuild_device_tensor_from_numpy",
    "_rebuild_device_tensor_from_cpu_tensor",
];

/// `torch.<dtype>` as `str(dtype)` spells it.
const DTYPES: &[&str] = &[
    "float64",
    "float32",
    "float16",
    "bfloat16",
    "complex32",
    "complex64",
    "complex128",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "int8",
    "int16",
    "int32",
    "int64",
    "bool",
    "qint8",
    "quint8",
    "qint32",
    "quint4x2",
    "quint2x4",
    "float8_e5m2",
    "float8_e4m3fn",
    "float8_e5m2fnuz",
    "float8_e4m3fnuz",
    "float8_e8m0fnu",
    "float4_e2m1fn_x2",
    "bits1x8",
    "bits2x4",
    "bits4x2",
    "bits8",
    "bits16",
    "uint1",
    "uint2",
    "uint3",
    "uint4",
    "uint5",
    "uint6",
    "uint7",
    "int1",
    "int2",
    "int3",
    "int4",
    "int5",
    "int6",
    "int7",
];

/// Quantization schemes.
const QSCHEMES: &[&str] = &[
    "per_tensor_affine",
    "per_tensor_symmetric",
    "per_channel_affine",
    "per_channel_symmetric",
    "per_channel_affine_float_qparams",
];

/// The element types of the legacy typed classes (`torch.FloatStorage`,
/// `torch.cuda.LongTensor`, …).
const ELEMENTS: &[&str] = &[
    "Double",
    "Float",
    "Half",
    "BFloat16",
    "Long",
    "Int",
    "Short",
    "Char",
    "Byte",
    "Bool",
    "ComplexDouble",
    "ComplexFloat",
    "QUInt8",
    "QInt8",
    "QInt32",
    "QUInt4x2",
    "QUInt2x4",
];

/// `<Element><suffix>`, e.g. `FloatStorage` for suffix `Storage`.
fn typed_class(name: &str, suffix: &str) -> bool {
    name.strip_suffix(suffix)
        .is_some_and(|element| ELEMENTS.contains(&element))
}

#[cfg(test)]
mod tests {
    use super::is_allowed;

    #[test]
    fn the_state_dict_globals_pass_and_everything_else_fails() {
        for (m, n) in [
            ("collections", "OrderedDict"),
            ("torch._utils", "_rebuild_tensor_v2"),
            ("torch", "FloatStorage"),
            ("torch", "BFloat16Storage"),
            ("torch", "float32"),
            ("torch.cuda", "HalfTensor"),
            ("__builtin__", "set"),
            ("torch._tensor", "_rebuild_from_type_v2"),
        ] {
            assert!(is_allowed(m, n), "{m}.{n}");
        }
        for (m, n) in [
            ("os", "system"),
            ("posix", "system"),
            ("builtins", "eval"),
            ("builtins", "getattr"),
            ("__builtin__", "exec"),
            ("torch", "load"),
            ("torch", "Storage"),
            ("torch", "FooStorage"),
            ("torch._utils", "_import_dotted_name"),
            ("collections", "OrderedDict.fromkeys"),
            ("torch.nn.parameter", "Parameter.__reduce_ex__"),
            ("subprocess", "Popen"),
            ("pickle", "loads"),
            ("", ""),
        ] {
            assert!(!is_allowed(m, n), "{m}.{n}");
        }
    }
}
