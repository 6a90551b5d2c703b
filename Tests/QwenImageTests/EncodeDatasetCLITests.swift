import Foundation
import Quant
import Testing
@testable import QwenImage

// `qwen-run encode --out-dir` (dataset mode): chunk files, shards, the index, --resume, and its errors.

@Suite("qwen-run encode --out-dir", .serialized)
struct EncodeDatasetCLITests {
    typealias Run = QwenRunProcess.Run

    func run(_ args: [String]) throws -> Run { try QwenRunProcess.run(args) }

    func tempPath(_ name: String) -> String { TF.tempRoot.appendingPathComponent("\(UInt32.random(in: 0 ... .max))-\(name)").path }

    struct IndexLine: Decodable, Hashable { let id: Int; let file: String; let row: Int; let length: Int }

    func index(_ path: String) throws -> [IndexLine] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
            .map { try JSONDecoder().decode(IndexLine.self, from: Data($0.utf8)) }
    }

    /// The prompts file: the reference's single prompts, then the same again, so chunks of 2 straddle them.
    func promptsFile() throws -> (path: String, prompts: [(prefix: String, prompt: String)]) {
        let cases = try TF.singlePrompts()
        let all = cases + cases
        let lines = try all.map { String(decoding: try JSONSerialization.data(withJSONObject: $0.prompt, options: [.fragmentsAllowed]), as: UTF8.self) }
        let path = tempPath("prompts.jsonl")
        try (lines.joined(separator: "\n\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return (path, all)
    }

    /// Row `row` of a [B, L, H] tensor, cut to its first `length` tokens.
    func row(_ f: SafetensorsFile, _ name: String, _ row: Int, _ length: Int) throws -> [Float] {
        let shape = try f.info(name).shape
        let all = try f.floats(name)
        let start = row * shape[1] * shape[2]
        return Array(all[start ..< start + length * shape[2]])
    }

    @Test("chunks hold the reference embeddings, bit for bit those of one --out batch; the index finds every prompt")
    func chunksMatchBatchAndReferences() throws {
        let pack = try TF.pack("f32"), refs = try TF.refs()
        let (file, prompts) = try promptsFile()
        let dir = tempPath("ds")
        let r = try run(["encode", "--pack", pack, "--prompts-file", file, "--out-dir", dir, "--chunk-size", "2", "--threads", "2", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let summary = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        #expect(summary?["chunks_written"] as? Int == (prompts.count + 1) / 2)
        #expect(summary?["prompts_encoded"] as? Int == prompts.count)

        let batch = tempPath("batch.safetensors")
        let b = try run(["encode", "--pack", pack, "--prompts-file", file, "--out", batch, "--threads", "2"])
        #expect(b.status == 0, "\(b.stderr)")
        let whole = try SafetensorsFile(path: batch)
        let lines = try index(dir + "/index.jsonl")
        #expect(lines.map(\.id) == Array(0 ..< prompts.count))
        for line in lines {
            #expect(line.file == String(format: "chunk-%06d.safetensors", line.id / 2) && line.row == line.id % 2)
            let chunk = try SafetensorsFile(path: dir + "/" + line.file)
            let got = try row(chunk, "prompt_embeds", line.row, line.length)
            #expect(got == (try row(whole, "prompt_embeds", line.id, line.length)), "prompt \(line.id)")
            let ref = try refs.floats("\(prompts[line.id].prefix).prompt_embeds")
            #expect(ref.count == got.count, "prompt \(line.id): length \(line.length)")
            if ref.count == got.count { #expect(TF.relL2(got, ref) <= Tolerances.textF32RelL2, "prompt \(line.id)") }
            let mask = try chunk.int64s("prompt_embeds_mask")
            let width = try chunk.info("prompt_embeds_mask").shape[1]
            #expect(mask[(line.row * width) ..< ((line.row + 1) * width)].reduce(0, +) == Int64(line.length))
        }
    }

    @Test("shards K/N split the chunks between workers sharing one folder; together they cover every prompt once")
    func shardsCoverEveryPromptOnce() throws {
        let pack = try TF.pack("q8")
        let (file, prompts) = try promptsFile()
        let dir = tempPath("shards")
        var seen: [IndexLine] = []
        for k in 0 ..< 3 {
            let r = try run(["encode", "--pack", pack, "--prompts-file", file, "--out-dir", dir, "--chunk-size", "1", "--shard", "\(k)/3"])
            #expect(r.status == 0, "\(r.stderr)")
            let lines = try index(dir + "/index-\(k)-of-3.jsonl")
            #expect(lines.allSatisfy { $0.id % 3 == k })
            seen += lines
        }
        #expect(seen.map(\.id).sorted() == Array(0 ..< prompts.count))
        #expect(Set(seen.map(\.file)).count == prompts.count)
    }

    @Test("--resume keeps the finished chunks and redoes a missing one identically; a changed job is refused")
    func resume() throws {
        let pack = try TF.pack("q8")
        let (file, _) = try promptsFile()
        let dir = tempPath("resume")
        let args = ["encode", "--pack", pack, "--prompts-file", file, "--out-dir", dir, "--chunk-size", "2"]
        #expect(try run(args).status == 0)
        let victim = dir + "/chunk-000001.safetensors"
        let before = try Data(contentsOf: URL(fileURLWithPath: victim))
        try FileManager.default.removeItem(atPath: victim)
        // What a run killed while writing leaves: a temporary of a process that no longer exists.
        let leftover = dir + "/.chunk-000001.safetensors.tmp-999999999-7"
        try Data("half".utf8).write(to: URL(fileURLWithPath: leftover))

        let again = try run(args)
        #expect(again.status != 0 && again.stderr.contains("--resume"), "\(again.stderr)")
        let r = try run(args + ["--resume", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let summary = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        #expect(summary?["chunks_written"] as? Int == 1)
        #expect((summary?["chunks_kept"] as? Int ?? 0) >= 1)
        #expect(try Data(contentsOf: URL(fileURLWithPath: victim)) == before)
        #expect(!FileManager.default.fileExists(atPath: leftover))

        let otherChunks = try run(["encode", "--pack", pack, "--prompts-file", file, "--out-dir", dir, "--chunk-size", "3", "--resume"])
        #expect(otherChunks.status != 0 && otherChunks.stderr.contains("other prompts"), "\(otherChunks.stderr)")
        let otherDType = try run(args + ["--resume", "--dtype", "bf16"])
        #expect(otherDType.status != 0 && otherDType.stderr.contains("another job"), "\(otherDType.stderr)")
    }

    @Test("bad dataset options exit non-zero with a message that says what to give")
    func badOptions() throws {
        let pack = try TF.pack("q8")
        let (file, _) = try promptsFile()
        let dir = tempPath("bad")
        let plainFile = tempPath("plain.txt")
        try Data("not a folder".utf8).write(to: URL(fileURLWithPath: plainFile))
        let cases: [([String], String)] = [
            (["--prompts-file", file, "--out-dir", dir, "--shard", "3/3"], "0 <= K < N"),
            (["--prompts-file", file, "--out-dir", dir, "--shard", "x"], "expected K/N"),
            (["--prompts-file", file, "--out-dir", dir, "--chunk-size", "0"], "--chunk-size"),
            (["--prompts-file", file, "--out-dir", dir, "--out", dir + ".safetensors"], "exactly one of --out"),
            (["--prompt", "a cat", "--out-dir", dir], "--out-dir needs --prompts-file"),
            (["--prompts-file", file, "--out", dir + ".safetensors", "--resume"], "need --out-dir"),
            (["--prompts-file", file, "--out-dir", dir, "--resume", "--force"], "not both"),
            (["--prompts-file", file, "--out-dir", plainFile], "names a file"),
            (["--prompts-file", file, "--out-dir", file], "is the input"),
            (["--prompts-file", file, "--out-dir", pack + "/embeds"], "inside"),
        ]
        for (extra, message) in cases {
            let r = try run(["encode", "--pack", pack] + extra)
            #expect(r.status != 0 && r.stderr.contains(message), "\(extra): \(r.stderr)")
        }
    }
}
