import Foundation
import Quant
import QwenImage

/// What the CLI writes as a safetensors file, the server sends either as that file
/// (`Accept: application/octet-stream`) or as JSON with shapes and base64 little-endian data: one builder
/// (SafetensorsWriter) for both, so they hold the same tensors.
extension SafetensorsWriter {
    /// `prompt_embeds` / `prompt_embeds_mask` (with `prefix`, e.g. `negative_`), the embeddings in f32 or bf16.
    mutating func add(_ e: PromptEmbeddings, prefix: String, bf16: Bool) throws {
        let shape = [e.batch, e.length, e.hidden]
        if bf16 {
            try add("\(prefix)prompt_embeds", bf16From: e.embeds, shape: shape)
        } else {
            try add("\(prefix)prompt_embeds", f32: e.embeds, shape: shape)
        }
        try add("\(prefix)prompt_embeds_mask", int64: e.mask, shape: [e.batch, e.length])
        if let pad = e.imagePadMask {
            try add("\(prefix)image_pad_mask", dtype: .BOOL, shape: [e.batch, e.length], bytes: Data(pad))
        }
    }

    /// `{"NAME": {"dtype": "F32", "shape": [...], "data": BASE64}, ...}` plus the `extra` fields.
    func json(extra: [String: Any] = [:]) throws -> Data {
        var dict = extra
        for e in entries {
            dict[e.name] = ["dtype": e.dtype.rawValue, "shape": e.shape, "data": e.bytes.base64EncodedString()] as [String: Any]
        }
        return try JSONSerialization.data(withJSONObject: dict, options: [.sortedKeys, .withoutEscapingSlashes])
    }
}
