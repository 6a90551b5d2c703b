import Foundation
import Quant

// The request side of `qwen-run serve` (the HTTP server itself is in the qwen-run target, on SwiftNIO):
// bodies and query strings to jobs, and the answers. Here, in the library, so that the fuzzers reach it
// (ParserHarness.serveRequest).

/// An answer of `qwen-run serve`: status, content type, body and extra headers. Errors are JSON,
/// `{"error": "..."}`, with the status that says whose fault it is (4xx: the request; 5xx: the server).
public struct ServeResponse: Sendable {
    public var status: Int
    public var contentType: String
    public var body: Data
    public var headers: [String: String] = [:]

    public init(status: Int, contentType: String, body: Data, headers: [String: String] = [:]) {
        self.status = status
        self.contentType = contentType
        self.body = body
        self.headers = headers
    }

    public static func json(_ status: Int, _ object: [String: Any]) -> ServeResponse {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        return ServeResponse(status: status, contentType: "application/json", body: data)
    }

    public static func error(_ status: Int, _ message: String) -> ServeResponse { json(status, ["error": message]) }

    /// The status for an error thrown while serving: bad input is the client's (400), a pack that lacks
    /// the component is 404, a memory budget too small for the request 503, anything else the server's (500).
    public static func from(_ error: Error) -> ServeResponse {
        switch error {
        case let e as ServeError: return .error(e.status, e.message)
        case let e as QwenImageError:
            switch e {
            case .invalidInput, .image, .tensor: return .error(400, e.description)
            case .missingComponent: return .error(404, e.description)
            case .budget: return .error(503, e.description)
            case .config, .io: return .error(500, e.description)
            }
        case let e as QuantError: return .error(500, e.description)
        default: return .error(500, "\(error)")
        }
    }
}

/// A refusal with its HTTP status.
public struct ServeError: Error {
    public let status: Int
    public let message: String
    public init(status: Int, message: String) { self.status = status; self.message = message }
    public static func bad(_ message: String) -> ServeError { ServeError(status: 400, message: message) }
}

/// What the client wants back: JSON (default), the safetensors file the CLI would write, or a PNG.
public enum ServeFormat: String, Sendable { case json, safetensors, png }

/// A parsed request, ready for the worker (all of it Sendable: it crosses from the event loop to the
/// worker thread).
public enum ServeJob: Sendable {
    public struct Text: Sendable {
        public var prompt: String
        public var negativePrompt: String?
        public var maxSequenceLength: Int
        public var bf16: Bool
        public var format: ServeFormat
    }
    public struct Edit: Sendable {
        public var text: Text
        public var images: [Data]
        public var mode: EditMode?
        public var preresize: Bool
        /// Qwen-Image 2.1 packs: the pipeline's `output_resolution` for the pre-resize (default 1024).
        public var outputResolution: Int?
    }
    public struct VAEEncode: Sendable {
        public var image: Data
        public var normalize: Bool
        public var component: String
        public var format: ServeFormat
    }
    public struct VAEDecode: Sendable {
        /// A safetensors file with a `latents` tensor (sent as is, or built from the JSON form).
        public var latents: Data
        public var denormalize: Bool
        public var component: String
        public var png16: Bool
        public var format: ServeFormat
    }
    case text(Text)
    case edit(Edit)
    case vaeEncode(VAEEncode)
    case vaeDecode(VAEDecode)

    public var route: String {
        switch self {
        case .text, .edit: return "/v1/encode"
        case .vaeEncode: return "/v1/vae/encode"
        case .vaeDecode: return "/v1/vae/decode"
        }
    }
}

/// Parses request bodies and query strings into jobs, strictly: unknown fields, wrong types and
/// out-of-range values are refused with a message naming the field.
public enum ServeRequest {
    /// The fields each route accepts (JSON body keys, or query parameters for raw bodies).
    static let encodeFields = ["prompt", "negative_prompt", "images", "mode", "preresize", "output_resolution", "max_sequence_length",
                               "dtype", "format"]
    static let vaeEncodeFields = ["image", "normalize", "component", "format"]
    static let vaeDecodeFields = ["latents", "denormalize", "component", "png16", "format"]

    /// One request's fields: from a JSON object body, or from the query string (raw bodies).
    struct Fields {
        var values: [String: Any]
        let source: String

        func string(_ key: String) throws -> String? {
            guard let v = values[key], !(v is NSNull) else { return nil }
            guard let s = v as? String else { throw ServeError.bad("\(source) field \(key): expected a string, found \(kind(v))") }
            return s
        }

        func bool(_ key: String) throws -> Bool? {
            guard let v = values[key], !(v is NSNull) else { return nil }
            if let b = v as? Bool { return b }
            if let s = v as? String, source == "query" {
                switch s.lowercased() {
                case "1", "true", "yes": return true
                case "0", "false", "no": return false
                default: break
                }
            }
            throw ServeError.bad("\(source) field \(key): expected true or false, found \(kind(v))")
        }

        func int(_ key: String) throws -> Int? {
            guard let v = values[key], !(v is NSNull) else { return nil }
            if let i = v as? Int { return i }
            if let s = v as? String, source == "query", let i = Int(s) { return i }
            throw ServeError.bad("\(source) field \(key): expected an integer, found \(kind(v))")
        }

        func strings(_ key: String) throws -> [String]? {
            guard let v = values[key], !(v is NSNull) else { return nil }
            guard let a = v as? [Any] else { throw ServeError.bad("\(source) field \(key): expected an array of strings, found \(kind(v))") }
            return try a.enumerated().map { i, x in
                guard let s = x as? String else { throw ServeError.bad("\(source) field \(key)[\(i)]: expected a string, found \(kind(x))") }
                return s
            }
        }

        func kind(_ v: Any) -> String {
            switch v {
            case is String: return "a string"
            case is Bool: return "a boolean"
            case is Int, is Double: return "a number"
            case is [Any]: return "an array"
            case is [String: Any]: return "an object"
            case is NSNull: return "null"
            default: return "\(type(of: v))"
            }
        }
    }

    /// A JSON object body, parsed with the project's strict reader (nesting limit, duplicate keys refused),
    /// checked against the route's fields.
    static func jsonFields(_ body: Data, allowed: [String]) throws -> Fields {
        guard !body.isEmpty else { throw ServeError.bad("empty body: expected a JSON object with the fields " + allowed.joined(separator: ", ")) }
        let value: Any
        do {
            value = try body.withUnsafeBytes { raw -> Any in
                var scanner = JSONScanner(raw.bindMemory(to: UInt8.self), file: "request body",
                                          makeError: { ServeError.bad("request body is \($0)") })
                let v = try scanner.value()
                try scanner.end()
                return v
            }
        }
        guard let dict = value as? [String: Any] else { throw ServeError.bad("request body: expected a JSON object, found \(Fields(values: [:], source: "").kind(value))") }
        try checkKnown(dict.keys, allowed: allowed, source: "body")
        return Fields(values: dict, source: "body")
    }

    /// Query parameters (`?a=1&b=x`), percent-decoded, checked against the route's fields.
    static func queryFields(_ query: Substring?, allowed: [String]) throws -> Fields {
        var values: [String: Any] = [:]
        for pair in (query ?? "").split(separator: "&") where !pair.isEmpty {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let key = String(kv[0]).removingPercentEncoding,
                  let value = (kv.count > 1 ? String(kv[1]).replacingOccurrences(of: "+", with: " ") : "").removingPercentEncoding else {
                throw ServeError.bad("query: cannot percent-decode '\(pair)'")
            }
            guard values[key] == nil else { throw ServeError.bad("query: parameter \(key) given twice") }
            values[key] = value
        }
        try checkKnown(values.keys, allowed: allowed, source: "query")
        return Fields(values: values, source: "query")
    }

    static func checkKnown(_ keys: Dictionary<String, Any>.Keys, allowed: [String], source: String) throws {
        if let unknown = keys.sorted().first(where: { !allowed.contains($0) }) {
            throw ServeError.bad("\(source): unknown field '\(unknown)' (accepted: \(allowed.joined(separator: ", ")))")
        }
    }

    static func base64(_ s: String, field: String) throws -> Data {
        guard let d = Data(base64Encoded: s, options: .ignoreUnknownCharacters), !d.isEmpty else {
            throw ServeError.bad("body field \(field): not base64 data (or empty)")
        }
        return d
    }

    /// The answer format: the `format` field, else the Accept header, else `fallback`.
    static func format(_ fields: Fields, accept: String?, allowed: [ServeFormat], fallback: ServeFormat) throws -> ServeFormat {
        if let f = try fields.string("format") {
            guard let v = ServeFormat(rawValue: f), allowed.contains(v) else {
                throw ServeError.bad("\(fields.source) field format: expected \(allowed.map(\.rawValue).joined(separator: ", ")), found '\(f)'")
            }
            return v
        }
        let a = (accept ?? "").lowercased()
        if a.contains("application/octet-stream") || a.contains("safetensors"), allowed.contains(.safetensors) { return .safetensors }
        if a.contains("image/png"), allowed.contains(.png) { return .png }
        return fallback
    }

    /// A VAE route's body is JSON only when it says so (curl's `--data-binary @x.png` sends a form type).
    static func isJSON(_ contentType: String?) -> Bool {
        (contentType ?? "").lowercased().hasPrefix("application/json")
    }

    // MARK: - Routes

    /// POST /v1/encode (any content type; the body is JSON): `{"prompt": ..., "negative_prompt"?, "images"?: [base64 PNG/JPEG], "mode"?, "preresize"?,
    /// "output_resolution"? (Qwen-Image 2.1 packs), "max_sequence_length"?, "dtype"?: "f32"|"bf16", "format"?: "json"|"safetensors"}`.
    public static func encode(body: Data, accept: String?) throws -> ServeJob {
        let f = try jsonFields(body, allowed: encodeFields)
        guard let prompt = try f.string("prompt") else { throw ServeError.bad("body: the field prompt (a string) is required") }
        guard !prompt.isEmpty else { throw ServeError.bad("body field prompt is empty (use \" \" for an empty prompt, as diffusers does)") }
        let negative = try f.string("negative_prompt")
        if let negative, negative.isEmpty {
            throw ServeError.bad("body field negative_prompt is empty (diffusers' convention for \"no negative prompt\" is a single space)")
        }
        for (name, text) in [("prompt", prompt), ("negative_prompt", negative ?? "")] where text.utf8.count > PromptsFile.maxPromptBytes {
            throw ServeError.bad("body field \(name) is \(text.utf8.count) bytes long; at most \(PromptsFile.maxPromptBytes) are accepted")
        }
        let msl = try f.int("max_sequence_length") ?? 1024
        guard (1 ... 1024).contains(msl) else { throw ServeError.bad("body field max_sequence_length: expected 1 ... 1024, found \(msl)") }
        let dtype = try f.string("dtype") ?? "f32"
        guard dtype == "f32" || dtype == "bf16" else { throw ServeError.bad("body field dtype: expected f32 or bf16, found '\(dtype)'") }
        let text = ServeJob.Text(prompt: prompt, negativePrompt: negative, maxSequenceLength: msl, bf16: dtype == "bf16",
                                 format: try format(f, accept: accept, allowed: [.json, .safetensors], fallback: .json))
        let images = try f.strings("images") ?? []
        let modeName = try f.string("mode")
        let preresize = try f.bool("preresize")
        let resolution = try f.int("output_resolution")
        guard !images.isEmpty else {
            if modeName != nil || preresize != nil || resolution != nil {
                throw ServeError.bad("body fields mode, preresize and output_resolution need images")
            }
            return .text(text)
        }
        if let r = resolution, !VisionGeometry.outputResolutions.contains(r) {
            throw ServeError.bad("body field output_resolution: expected \(VisionGeometry.outputResolutions), found \(r)")
        }
        guard f.values["max_sequence_length"] == nil else {
            throw ServeError.bad("body field max_sequence_length does not apply to Edit prompts (the Edit pipelines do not cut)")
        }
        var mode: EditMode?
        if let modeName {
            guard let m = EditMode(rawValue: modeName) else { throw ServeError.bad("body field mode: expected edit or edit-plus, found '\(modeName)'") }
            mode = m
        }
        do { try ReferenceImages.checkCount(images.count, mode: mode ?? ReferenceImages.defaultMode(imageCount: images.count)) } catch let e as QwenImageError {
            throw ServeError.bad("body field images: \(e.description)")
        }
        let data = try images.enumerated().map { try base64($1, field: "images[\($0)]") }
        return .edit(ServeJob.Edit(text: text, images: data, mode: mode, preresize: preresize ?? true, outputResolution: resolution))
    }

    /// POST /v1/vae/encode: a PNG/JPEG body (options in the query), or `{"image": base64, "normalize"?, "component"?, "format"?}`.
    public static func vaeEncode(body: Data, query: Substring?, contentType: String?, accept: String?) throws -> ServeJob {
        let f: Fields
        let image: Data
        if isJSON(contentType) {
            f = try jsonFields(body, allowed: vaeEncodeFields)
            guard let s = try f.string("image") else { throw ServeError.bad("body: the field image (base64 PNG or JPEG) is required") }
            image = try base64(s, field: "image")
        } else {
            f = try queryFields(query, allowed: vaeEncodeFields.filter { $0 != "image" })
            guard !body.isEmpty else { throw ServeError.bad("empty body: send the PNG or JPEG bytes, or a JSON object {\"image\": base64}") }
            image = body
        }
        return .vaeEncode(ServeJob.VAEEncode(image: image, normalize: try f.bool("normalize") ?? false,
                                             component: try component(f),
                                             format: try format(f, accept: accept, allowed: [.json, .safetensors], fallback: .json)))
    }

    /// POST /v1/vae/decode: a safetensors body with `latents` (options in the query), or
    /// `{"latents": {"dtype", "shape", "data": base64}, "denormalize"?, "component"?, "png16"?, "format"?}`.
    public static func vaeDecode(body: Data, query: Substring?, contentType: String?, accept: String?) throws -> ServeJob {
        let f: Fields
        let latents: Data
        if isJSON(contentType) {
            f = try jsonFields(body, allowed: vaeDecodeFields)
            guard let t = f.values["latents"] as? [String: Any] else {
                throw ServeError.bad("body: the field latents is required: {\"dtype\": \"F32\", \"shape\": [1, z_dim, T, h, w], \"data\": base64}")
            }
            let tf = Fields(values: t, source: "body latents")
            try checkKnown(t.keys, allowed: ["dtype", "shape", "data"], source: "body field latents")
            guard let dtypeName = try tf.string("dtype"), let dtype = SafetensorsDType(rawValue: dtypeName.uppercased()) else {
                throw ServeError.bad("body field latents.dtype: expected F32, BF16 or F16")
            }
            guard let shape = t["shape"] as? [Any], case let dims = shape.compactMap({ $0 as? Int }), dims.count == shape.count, dims.count <= 8 else {
                throw ServeError.bad("body field latents.shape: expected an array of integers")
            }
            guard let dataString = try tf.string("data") else { throw ServeError.bad("body field latents.data: base64 data is required") }
            var w = SafetensorsWriter()
            do { try w.add("latents", dtype: dtype, shape: dims, bytes: try base64(dataString, field: "latents.data")) } catch let e as QuantError {
                throw ServeError.bad("body field latents: \(e.description)")
            }
            latents = try w.serialized()
        } else {
            f = try queryFields(query, allowed: vaeDecodeFields.filter { $0 != "latents" })
            guard !body.isEmpty else { throw ServeError.bad("empty body: send a safetensors file with a `latents` tensor, or a JSON object") }
            latents = body
        }
        let format = try format(f, accept: accept, allowed: [.json, .safetensors, .png], fallback: .json)
        let png16 = try f.bool("png16") ?? false
        if png16 && format == .safetensors { throw ServeError.bad("png16 applies to PNG output (format json or png)") }
        return .vaeDecode(ServeJob.VAEDecode(latents: latents, denormalize: try f.bool("denormalize") ?? false,
                                             component: try component(f), png16: png16, format: format))
    }

    static func component(_ f: Fields) throws -> String {
        let c = try f.string("component") ?? "vae"
        guard c == "vae" || c == "vae_rgba" else { throw ServeError.bad("\(f.source) field component: expected vae or vae_rgba, found '\(c)'") }
        return c
    }
}
