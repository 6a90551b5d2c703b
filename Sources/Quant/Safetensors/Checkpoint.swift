import Foundation

/// One model folder of a checkpoint (`text_encoder/`, `vae/`, ...): its config and safetensors files,
/// sharded through `*.safetensors.index.json` or not; or (`init(name:folder:files:)`) a folder holding
/// only config.json with tensors from other files (a GGUF import).
public final class CheckpointComponent: @unchecked Sendable {
    public let name: String
    public let folder: URL
    /// The tensor files, in name order.
    public let files: [any CheckpointTensorFile]
    /// Tensor names in file order.
    public let tensorNames: [String]
    private let location: [String: Int]

    public init(name: String, folder: URL) throws {
        self.name = name
        self.folder = folder
        let fm = FileManager.default
        let entries = (try? fm.contentsOfDirectory(atPath: folder.path)) ?? []
        let indexes = entries.filter { $0.hasSuffix(".safetensors.index.json") }.sorted()
        var files: [SafetensorsFile] = []
        var location: [String: Int] = [:]
        var names: [String] = []
        if indexes.count > 1 {
            throw QuantError.index(file: folder.path,
                message: "found \(indexes.count) index files (\(indexes.joined(separator: ", "))), expected at most one")
        }
        if let indexName = indexes.first {
            let indexPath = folder.appendingPathComponent(indexName).path
            let map = try Self.readIndex(indexPath)
            let shardNames = Array(Set(map.values)).sorted()
            for s in shardNames {
                let p = folder.appendingPathComponent(s).path
                guard fm.fileExists(atPath: p) else {
                    throw QuantError.index(file: indexPath, message: "refers to \(s), which does not exist in \(folder.path)")
                }
                files.append(try SafetensorsFile(path: p))
            }
            let fileIndex = Dictionary(uniqueKeysWithValues: shardNames.enumerated().map { ($1, $0) })
            for (fi, f) in files.enumerated() {
                for t in f.tensorNames where map[t] == shardNames[fi] { names.append(t); location[t] = fi }
            }
            for (t, s) in map.sorted(by: { $0.key < $1.key }) where location[t] == nil {
                let f = files[fileIndex[s]!]
                throw QuantError.index(file: indexPath,
                    message: "maps tensor \(t) to \(s), but \(f.path) has no tensor of that name (wrong or stale index)")
            }
        } else {
            let st = entries.filter { $0.hasSuffix(".safetensors") }.sorted()
            guard !st.isEmpty else {
                throw QuantError.layout(path: folder.path, message: "no .safetensors files and no *.safetensors.index.json")
            }
            for s in st {
                let f = try SafetensorsFile(path: folder.appendingPathComponent(s).path)
                for t in f.tensorNames {
                    if let prev = location[t] {
                        throw QuantError.safetensors(file: f.path, tensor: t,
                            message: "also present in \(files[prev].path); a component without an index must not repeat tensors")
                    }
                    location[t] = files.count
                    names.append(t)
                }
                files.append(f)
            }
        }
        self.files = files
        self.location = location
        self.tensorNames = names
    }

    /// A component whose tensors come from `files` (names must be unique across them) and whose
    /// config.json is in `folder`.
    public init(name: String, folder: URL, files: [any CheckpointTensorFile]) throws {
        self.name = name
        self.folder = folder
        self.files = files
        var location: [String: Int] = [:], names: [String] = []
        for (i, f) in files.enumerated() {
            for t in f.tensorNames {
                if let prev = location[t] {
                    throw QuantError.layout(path: f.path, message: "tensor \(t) is also in \(files[prev].path)")
                }
                location[t] = i
                names.append(t)
            }
        }
        self.location = location
        tensorNames = names
    }

    public static func readIndex(_ path: String) throws -> [String: String] {
        guard let data = try FileBytes.read(path) else {
            throw QuantError.index(file: path, message: "cannot read the index")
        }
        // The strict reader: a tensor listed twice in weight_map is an error, not "last one wins".
        let parsed = try data.withUnsafeBytes { raw -> Any in
            var s = JSONScanner(raw.bindMemory(to: UInt8.self), file: path, makeError: { QuantError.index(file: path, message: $0) })
            let v = try s.value()
            try s.end()
            return v
        }
        guard let obj = parsed as? [String: Any] else {
            throw QuantError.index(file: path, message: "not a JSON object")
        }
        guard let wm = obj["weight_map"] as? [String: Any] else {
            throw QuantError.index(file: path, message: "has no weight_map object")
        }
        var map: [String: String] = [:]
        for (k, v) in wm {
            guard let s = v as? String, !s.contains("/"), s.hasSuffix(".safetensors") else {
                throw QuantError.index(file: path, message: "weight_map entry \(k) is not a .safetensors file name in the same folder")
            }
            map[k] = s
        }
        guard !map.isEmpty else { throw QuantError.index(file: path, message: "weight_map is empty") }
        return map
    }

    /// config.json of this component (nil when absent).
    public var configURL: URL { folder.appendingPathComponent("config.json") }
    public func configData() throws -> Data {
        guard let d = try FileBytes.read(configURL.path) else {
            throw QuantError.layout(path: configURL.path, message: "missing config.json for component \(name)")
        }
        return d
    }

    public func contains(_ tensor: String) -> Bool { location[tensor] != nil }

    /// The file holding a tensor and its record.
    public func locate(_ tensor: String) throws -> (file: any CheckpointTensorFile, info: CheckpointTensorInfo) {
        guard let i = location[tensor] else { throw QuantError.missingTensor(file: folder.path, tensor: tensor) }
        let f = files[i]
        return (f, try f.tensorInfo(tensor))
    }

    public func info(_ tensor: String) throws -> CheckpointTensorInfo { try locate(tensor).info }
    public func floats(_ tensor: String) throws -> [Float] { try locate(tensor).file.floats(tensor) }

    /// Source files of this component (the config and index JSON files of its folder, then every
    /// tensor file), for hashing.
    public var sourceFiles: [URL] {
        let fm = FileManager.default
        let entries = ((try? fm.contentsOfDirectory(atPath: folder.path)) ?? []).sorted()
        var urls = entries.filter { $0.hasSuffix(".json") }.map { folder.appendingPathComponent($0) }
        var seen = Set(urls.map(\.path))
        for f in files where seen.insert(URL(fileURLWithPath: f.path).standardizedFileURL.path).inserted {
            urls.append(URL(fileURLWithPath: f.path).standardizedFileURL)
        }
        return urls
    }
}

/// A Hugging Face checkpoint: either a diffusers root (`model_index.json` with `text_encoder/`,
/// `vae/`, `tokenizer/`, `processor/`, and any other VAE folder such as `vae_rgba/`) or one component folder.
public final class Checkpoint: @unchecked Sendable {
    public let root: URL
    /// What the pack records as its source: the root folder, or the GGUF file(s) of an import.
    public let sourceDescription: String
    /// Model components (folders with safetensors), by name.
    public let components: [String: CheckpointComponent]
    /// Folders carried verbatim (tokenizer, processor), by name.
    public let fileFolders: [String: URL]
    /// Folder names this checkpoint has but no pack needs (scheduler, transformer, ...).
    public let ignored: [String]

    public var componentNames: [String] { components.keys.sorted() }

    /// Folders that are carried verbatim when present.
    public static let fileFolderNames = ["tokenizer", "processor"]

    /// - Parameter only: the component folders to use (nil: all). Asking for `text_encoder` brings
    ///   `tokenizer/` and `processor/` along when present.
    public init(path: String, only: Set<String>? = nil) throws {
        let fm = FileManager.default
        root = URL(fileURLWithPath: path).standardizedFileURL
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: root.path, isDirectory: &isDir) else {
            throw QuantError.layout(path: root.path, message: "does not exist")
        }
        guard isDir.boolValue else {
            throw QuantError.layout(path: root.path,
                message: "is a file; give a checkpoint folder (a diffusers root with model_index.json, or one component folder such as text_encoder/)")
        }
        let entries = ((try? fm.contentsOfDirectory(atPath: root.path)) ?? []).sorted()
        let hasWeights = entries.contains { $0.hasSuffix(".safetensors") || $0.hasSuffix(".safetensors.index.json") }
        var comps: [String: CheckpointComponent] = [:]
        var folders: [String: URL] = [:]
        var ignored: [String] = []
        if hasWeights {
            // A single component folder.
            let name = Self.componentName(folder: root)
            if only == nil || only!.contains(name) {
                comps[name] = try CheckpointComponent(name: name, folder: root)
            }
        } else {
            for e in entries where !e.hasPrefix(".") {
                let sub = root.appendingPathComponent(e)
                var d: ObjCBool = false
                guard fm.fileExists(atPath: sub.path, isDirectory: &d), d.boolValue else { continue }
                let subEntries = (try? fm.contentsOfDirectory(atPath: sub.path)) ?? []
                // The tokenizer and processor come along with the text encoder (it cannot run without them).
                let implied = Self.fileFolderNames.contains(e) && only?.contains("text_encoder") == true
                if only != nil && !only!.contains(e) && !implied { ignored.append(e); continue }
                if Self.fileFolderNames.contains(e) {
                    folders[e] = sub
                } else if subEntries.contains(where: { $0.hasSuffix(".safetensors") || $0.hasSuffix(".safetensors.index.json") }) {
                    comps[e] = try CheckpointComponent(name: e, folder: sub)
                } else {
                    ignored.append(e)
                }
            }
        }
        if let only {
            let found = Set(comps.keys).union(folders.keys)
            for want in only.sorted() where !found.contains(want) {
                throw QuantError.layout(path: root.path,
                    message: "requested component \(want) not found (available: \((Set(comps.keys).union(folders.keys).union(ignored)).sorted().joined(separator: ", ")))")
            }
        }
        if comps.isEmpty && folders.isEmpty {
            throw QuantError.layout(path: root.path,
                message: "no model components found (expected model_index.json with text_encoder/, vae/, ... folders holding .safetensors files, or a single component folder)")
        }
        components = comps
        fileFolders = folders
        self.ignored = ignored
        sourceDescription = root.path
    }

    /// A checkpoint assembled by an importer: `root` holds the component folders' config files.
    public init(root: URL, sourceDescription: String, components: [CheckpointComponent], fileFolders: [String: URL]) {
        self.root = root
        self.sourceDescription = sourceDescription
        self.components = Dictionary(uniqueKeysWithValues: components.map { ($0.name, $0) })
        self.fileFolders = fileFolders
        ignored = []
    }

    public func component(_ name: String) throws -> CheckpointComponent {
        guard let c = components[name] else {
            throw QuantError.layout(path: root.path, message: "no component \(name) (found: \(componentNames.joined(separator: ", ")))")
        }
        return c
    }

    /// The name of a single component folder: its folder name if that is a known one, else guessed
    /// from config.json (`_class_name` of a diffusers VAE, `model_type` of the text encoder).
    static func componentName(folder: URL) -> String {
        let base = folder.lastPathComponent
        if base == "text_encoder" || base.hasPrefix("vae") { return base }
        if let d = try? FileBytes.read(folder.appendingPathComponent("config.json").path),
           let obj = (try? JSONSerialization.jsonObject(with: d)) as? [String: Any] {
            if let cls = obj["_class_name"] as? String, cls.hasPrefix("Autoencoder") { return "vae" }
            if let mt = obj["model_type"] as? String, mt.hasPrefix("qwen2") { return "text_encoder" }
        }
        return base
    }
}
