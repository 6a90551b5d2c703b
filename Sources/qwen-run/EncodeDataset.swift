import ArgumentParser
import Foundation
import Quant
import QwenImage

/// `qwen-run encode --prompts-file F --out-dir DIR`: dataset-scale encoding. The file's prompts are cut
/// into chunks of `--chunk-size` (chunk c holds prompts c·S ..< (c+1)·S, counting from 0 in file order,
/// blank lines skipped); shard K of N (`--shard K/N`) takes the chunks with c mod N = K, so any number of
/// workers can share one folder. Each chunk is one safetensors file, `chunk-NNNNNN.safetensors`, in the
/// layout `--out` writes, written atomically; `--resume` keeps the chunks that exist and match (same
/// prompts, same pack, same options) and redoes the rest. At the end the shard writes its index,
/// `index.jsonl` (or `index-K-of-N.jsonl`): one line per prompt, {"id", "file", "row", "length"}.
extension Encode {
    struct Shard: CustomStringConvertible {
        let index: Int
        let count: Int
        init?(_ argument: String) {
            let parts = argument.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 2, let k = Int(parts[0]), let n = Int(parts[1]), n >= 1, n <= 1_000_000, k >= 0, k < n else { return nil }
            index = k; count = n
        }
        init(index: Int, count: Int) { self.index = index; self.count = count }
        var description: String { "\(index)/\(count)" }
        var indexFileName: String { count == 1 ? "index.jsonl" : "index-\(index)-of-\(count).jsonl" }
    }

    static func chunkFileName(_ c: Int) -> String { String(format: "chunk-%06d.safetensors", c) }

    func validateDatasetOptions() throws {
        guard outDir != nil else {
            if shard != nil || resume || chunkSize != nil {
                throw ValidationError("--shard, --resume and --chunk-size need --out-dir DIR (one file per chunk of prompts)")
            }
            return
        }
        guard promptsFile != nil else { throw ValidationError("--out-dir needs --prompts-file FILE (a single --prompt goes to --out FILE)") }
        guard images.isEmpty else { throw ValidationError("--out-dir encodes text prompts; Edit prompts with --image are written with --out FILE") }
        if resume && force { throw ValidationError("give --resume (keep finished chunks) or --force (redo them), not both") }
        if let s = shard, Shard(s) == nil {
            throw ValidationError("--shard: expected K/N with 0 <= K < N, for example 0/4 ... 3/4 for four workers, found '\(s)'")
        }
        if let s = chunkSize, !(1 ... 65536).contains(s) { throw ValidationError("--chunk-size must be between 1 and 65536, got \(s)") }
    }

    /// The options that change the numbers a chunk holds, and the pack's text encoder (its manifest,
    /// which lists every shard's checksum): a chunk written under another key is not reused.
    private func jobKey(pack: Pack) throws -> String {
        let manifest = URL(fileURLWithPath: pack.path).appendingPathComponent("text_encoder")
            .appendingPathComponent(PackFormat.manifestFile)
        guard let bytes = try FileBytes.read(manifest.path) else {
            throw QwenImageError.io(path: manifest.path, message: "cannot read the text encoder's manifest")
        }
        var h = XXH64()
        let parts = [Data(bytes), Data("neg=\(negativePrompt ?? "\u{0}")|dtype=\(dtype.rawValue)|max=\(maxSequenceLength)".utf8)]
        for p in parts { p.withUnsafeBytes { h.update($0) } }
        return XXH64.format(h.digest())
    }

    private static func promptsKey(_ prompts: ArraySlice<String>) -> String {
        var h = XXH64()
        for p in prompts { Data((p + "\u{0}").utf8).withUnsafeBytes { h.update($0) } }
        return XXH64.format(h.digest())
    }

    func encodeDataset(_ prompts: [String], outDir: String) throws {
        let start = WallClock()
        let dir = URL(fileURLWithPath: outDir).standardizedFileURL
        var isDir: ObjCBool = false
        let fm = FileManager.default
        try AtomicOutput.checkDisjoint(output: dir, inputs: [URL(fileURLWithPath: pack), URL(fileURLWithPath: promptsFile!)])
        if !fm.fileExists(atPath: dir.path, isDirectory: &isDir) {
            do { try fm.createDirectory(at: dir, withIntermediateDirectories: false) } catch {
                throw QwenImageError.io(path: dir.path, message: "cannot create the output folder (\(error.localizedDescription)); its parent must exist and be writable")
            }
        } else if !isDir.boolValue {
            throw QwenImageError.io(path: dir.path, message: "--out-dir names a file, not a folder")
        }
        guard fm.isWritableFile(atPath: dir.path) else { throw QwenImageError.io(path: dir.path, message: "the output folder is not writable") }

        let size = chunkSize ?? 64
        let shard = self.shard.flatMap(Shard.init) ?? Shard(index: 0, count: 1)
        let chunkCount = (prompts.count + size - 1) / size
        let mine = stride(from: shard.index, to: chunkCount, by: shard.count).map { $0 }
        let pack = try Pack(path: self.pack)
        let key = try jobKey(pack: pack)
        let range = { (c: Int) in c * size ..< min(prompts.count, (c + 1) * size) }

        // Decide every chunk's fate before any work: an existing chunk is an error without --resume or
        // --force, kept with --resume when it is this job's, and an error when it belongs to another one.
        var todo: [Int] = []
        var kept = 0
        for c in mine {
            let file = dir.appendingPathComponent(Self.chunkFileName(c))
            AtomicOutput.removeLeftovers(of: file)
            guard fm.fileExists(atPath: file.path), !force else { todo.append(c); continue }
            guard resume else {
                throw QwenImageError.invalidInput("\(file.path) already exists: add --resume to keep the finished chunks and encode the rest, or --force to encode every chunk again")
            }
            try checkChunk(file, key: key, prompts: prompts[range(c)])
            kept += 1
        }
        let shardPrompts = mine.reduce(0) { $0 + range($1).count }
        if !common.json {
            note("\(prompts.count) prompts in \(chunkCount) chunk\(chunkCount == 1 ? "" : "s") of \(size); shard \(shard): \(mine.count) chunks, \(shardPrompts) prompts; \(kept) already done")
        }

        let encoder = try PromptEncoder(pack: pack, packPath: self.pack)
        let model = encoder.model
        let layers = model.config.numHiddenLayers
        let todoPrompts = todo.reduce(0) { $0 + range($1).count }
        let progress = Progress("encode", total: todoPrompts * layers, scale: layers, itemName: "prompts")
        var tokens = 0
        var plans = Set<String>()
        for c in todo {
            let chunk = Array(prompts[range(c)])
            let negatives = negativePrompt.map { [$0] } ?? []
            let name = Self.chunkFileName(c)
            let tokenized = try encoder.tokenize(chunk + negatives) { note("\(name): " + $0) }
            let lengths = tokenized.map { $0.ids.count }
            let plan = try choosePlan(model, lengths: lengths)
            plans.insert(plan.description)
            let passes = plan.passes(lengths).count
            // Each pass reports every layer: spread the chunk's prompts over its passes' layers.
            var reported = 0
            var layerCalls = 0
            model.onLayerDone = { _ in
                layerCalls += 1
                let target = min(chunk.count * layers, chunk.count * layers * layerCalls / (layers * passes))
                progress.advance(target - reported)
                reported = target
            }
            let groups = negatives.isEmpty ? [chunk] : [chunk, negatives]
            let results = try encoder.encode(tokenized: tokenized, groups: groups.map(\.count),
                                             maxSequenceLength: maxSequenceLength, plan: plan)
            progress.advance(chunk.count * layers - reported)
            try write(results, prompts: chunk.count, metadata: [
                "qwen_run_job": key, "qwen_run_prompts": Self.promptsKey(prompts[range(c)]),
                "first_prompt_id": "\(range(c).lowerBound)",
            ], to: dir.appendingPathComponent(name), force: true)
            tokens += lengths.reduce(0, +)
        }
        model.onLayerDone = nil
        progress.finish()

        // The index is read back from the chunk files, so kept chunks count exactly like new ones.
        var index = Data()
        for c in mine {
            let file = dir.appendingPathComponent(Self.chunkFileName(c))
            let st = try SafetensorsFile(path: file.path)
            let mask = try st.int64s("prompt_embeds_mask")
            let rows = range(c).count
            let length = rows > 0 ? mask.count / rows : 0
            for r in 0 ..< rows {
                let valid = mask[(r * length) ..< ((r + 1) * length)].reduce(0, +)
                index.append(Data("{\"id\":\(range(c).lowerBound + r),\"file\":\"\(Self.chunkFileName(c))\",\"row\":\(r),\"length\":\(valid)}\n".utf8))
            }
        }
        let indexFile = dir.appendingPathComponent(shard.indexFileName)
        do { try AtomicOutput.write(index, to: indexFile, force: true) } catch {
            throw QwenImageError.io(path: indexFile.path, message: "cannot write the index: \(error)")
        }

        let seconds = start.elapsed()
        printSummary([
            ("out_dir", dir.path), ("index", indexFile.path), ("shard", shard.description), ("chunk_size", size),
            ("prompts_in_file", prompts.count), ("prompts_in_shard", shardPrompts), ("chunks_in_shard", mine.count),
            ("chunks_written", todo.count), ("chunks_kept", kept), ("prompts_encoded", todoPrompts), ("tokens", tokens),
            ("seconds", (seconds * 1000).rounded() / 1000),
            ("prompts_per_second", (Double(todoPrompts) / max(seconds, 1e-9) * 1000).rounded() / 1000),
            ("tokens_per_second", (Double(tokens) / max(seconds, 1e-9) * 1000).rounded() / 1000),
            ("peak_rss_bytes", ProcessStats.peakRSS()), ("peak_rss", ByteSize.format(ProcessStats.peakRSS())),
        ] + (common.json ? [("plans", plans.sorted())] : []), json: common.json)
    }

    /// A chunk kept by --resume must be this job's: same text encoder and options, same prompts, and the
    /// shapes those imply. Anything else is an error, not a silent mix of two runs.
    private func checkChunk(_ file: URL, key: String, prompts: ArraySlice<String>) throws {
        let st: SafetensorsFile
        do { st = try SafetensorsFile(path: file.path) } catch {
            throw QwenImageError.invalidInput("\(file.path) cannot be read back (\(error)); delete it and run again with --resume")
        }
        let other = "was written by another job"
        let fix = "use a new --out-dir, or --force to encode every chunk again"
        guard st.metadata["qwen_run_job"] == key else {
            throw QwenImageError.invalidInput("\(file.path) \(other) (a different pack, negative prompt, --dtype or --max-sequence-length): \(fix)")
        }
        guard st.metadata["qwen_run_prompts"] == Self.promptsKey(prompts), st.metadata["first_prompt_id"] == "\(prompts.startIndex)" else {
            throw QwenImageError.invalidInput("\(file.path) \(other): it holds other prompts than prompts \(prompts.startIndex)..<\(prompts.endIndex) of the prompts file (changed file or --chunk-size?): \(fix)")
        }
        let embeds = try st.info("prompt_embeds").shape
        let mask = try st.info("prompt_embeds_mask").shape
        guard embeds.count == 3, embeds[0] == prompts.count, mask == [prompts.count, embeds[1]] else {
            throw QwenImageError.invalidInput("\(file.path): expected prompt_embeds [\(prompts.count), L, hidden] and prompt_embeds_mask [\(prompts.count), L], found \(embeds) and \(mask); delete it and run again with --resume")
        }
    }
}
