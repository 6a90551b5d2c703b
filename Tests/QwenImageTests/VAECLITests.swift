import Foundation
import Quant
import Testing
@testable import QwenImage

/// `qwen-run vae-encode` / `vae-decode` end to end (the binary `swift test` builds beside the test bundle):
/// outputs match the references; bad input exits non-zero with a clear message and leaves no output.
@Suite("qwen-run vae-encode / vae-decode", .serialized)
struct VAECLITests {
    typealias Run = QwenRunProcess.Run

    static let binary = QwenRunProcess.binary

    static let dir: URL = {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("qwen-vae-cli-\(getpid())")
        try? FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d
    }()

    func run(_ args: [String]) throws -> Run { try QwenRunProcess.run(args) }

    func path(_ name: String) -> String { Self.dir.appendingPathComponent("\(UInt32.random(in: 0 ... .max))-\(name)").path }

    func writeLatents(_ name: String, _ values: [Float], shape: [Int], tensor: String = "latents") throws -> String {
        var w = SafetensorsWriter()
        try w.add(tensor, f32: values, shape: shape)
        let p = path(name)
        try w.write(to: URL(fileURLWithPath: p))
        return p
    }

    /// No file named like the output (or its temporary) is left behind.
    func noOutput(_ out: String) -> Bool {
        let base = (out as NSString).lastPathComponent
        let left = (try? FileManager.default.contentsOfDirectory(atPath: Self.dir.path)) ?? []
        return !left.contains { $0.contains(base) }
    }

    @Test func encodeAndDecodeMatchTheReferences() throws {
        #expect(FileManager.default.isExecutableFile(atPath: Self.binary), "qwen-run not built at \(Self.binary)")
        let pack = try VAEFixture.pack(.f32).path
        let refs = try VAEFixture.refs("vae")
        // Encode the oracle's PNG, normalized, tiled.
        let lat = path("enc0.safetensors")
        let r = try run(["vae-encode", "--pack", pack, "--image", vaeFixtures.appendingPathComponent("refs/images/vae_enc0.png").path,
                         "--out", lat, "--normalize", "--tile", "32", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let got = try SafetensorsFile(path: lat)
        #expect(try got.info("latents").shape == [1, 16, 1, 8, 12])
        #expect(relL2(try got.floats("latents"), try refs.floats("vae.enc0.latents_normalized")) < Tolerances.vaeF32)
        let summary = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        #expect(summary?["peak_rss_bytes"] as? Int ?? 0 > 0)
        // Decode normalized latents with --denormalize to safetensors and PNG.
        let zn = try writeLatents("zn.safetensors", try refs.floats("vae.dec0.latents_normalized"), shape: [1, 16, 1, 6, 10])
        let sample = path("sample.safetensors")
        let d = try run(["vae-decode", "--pack", pack, "--latents", zn, "--out", sample, "--denormalize", "--max-ram", "1G"])
        #expect(d.status == 0, "\(d.stderr)")
        #expect(relL2(try SafetensorsFile(path: sample).floats("sample"), try refs.floats("vae.dec0.sample")) < Tolerances.vaeF32)
        let png = path("dec0.png")
        let p = try run(["vae-decode", "--pack", pack, "--latents", zn, "--out", png, "--denormalize"])
        #expect(p.status == 0, "\(p.stderr)")
        let ours = try ImageFile.read(path: png)
        let theirs = try ImageFile.read(path: vaeFixtures.appendingPathComponent("refs/images/vae_dec0.png").path)
        let maxDiff = zip(ours.pixels, theirs.pixels).map { abs(Int($0) - Int($1)) }.max() ?? 255
        #expect(maxDiff <= 1, "decoded PNG differs from the pipeline's by up to \(maxDiff) grey levels")
        let p16 = path("dec0-16.png")
        #expect(try run(["vae-decode", "--pack", pack, "--latents", zn, "--out", p16, "--denormalize", "--png16"]).status == 0)
    }

    /// `--bf16-dot` on a bf16 pack: the VAE's bf16 convolutions with bf16 activations stay within upstream
    /// bf16's error of the reference (the summary says the path ran; without AVX512-BF16 the exact path).
    @Test func bf16DotEncodeAndDecode() throws {
        let pack = try VAEFixture.pack(.bf16).path
        let refs = try VAEFixture.refs("vae")
        let zn = try writeLatents("zn-dot.safetensors", try refs.floats("vae.dec0.latents_normalized"), shape: [1, 16, 1, 6, 10])
        let sample = path("sample-dot.safetensors"), lat = path("enc-dot.safetensors")
        let d = try run(["vae-decode", "--pack", pack, "--latents", zn, "--out", sample, "--denormalize", "--json", "--bf16-dot"])
        let e = try run(["vae-encode", "--pack", pack, "--image", vaeFixtures.appendingPathComponent("refs/images/vae_enc0.png").path,
                         "--out", lat, "--normalize", "--json", "--bf16-dot"])
        #expect(d.status == 0 && e.status == 0, "\(d.stderr)\(e.stderr)")
        let active = (try JSONSerialization.jsonObject(with: Data(d.stdout.utf8)) as? [String: Any])?["bf16_dot"] as? Bool == true
        let bound = active ? Tolerances.bf16DotRelL2 : Tolerances.vaeF32
        let decErr = relL2(try SafetensorsFile(path: sample).floats("sample"), try refs.floats("vae.dec0.sample"))
        let encErr = relL2(try SafetensorsFile(path: lat).floats("latents"), try refs.floats("vae.enc0.latents_normalized"))
        print("qwen-run vae --bf16-dot (tiny, bf16 pack, active \(active)): decode rel L2 \(decErr), encode \(encErr)")
        #expect(decErr < bound && encErr < bound)
        if active { #expect(decErr >= Tolerances.bf16DotMinRelL2 && encErr >= Tolerances.bf16DotMinRelL2, "exact result: did the bf16 dot path run?") }
        // Tiled = untiled holds on this path too (every product is row-independent; the attention sees the whole frame).
        let tiled = path("sample-dot-tiled.safetensors")
        let t = try run(["vae-decode", "--pack", pack, "--latents", zn, "--out", tiled, "--denormalize", "--tile", "32", "--bf16-dot"])
        #expect(t.status == 0, "\(t.stderr)")
        #expect(relL2(try SafetensorsFile(path: tiled).floats("sample"), try SafetensorsFile(path: sample).floats("sample")) < Tolerances.vaeTiledVsUntiled)
    }

    /// A clip from the CLI: the oracle's uint8 frames written as PNGs, given as a folder (name order, numbers
    /// compared as numbers) and as repeated --image, encode to the upstream clip posterior; wrong frame counts
    /// and mixed sizes are refused with no output.
    @Test func encodeAClipFromFramesOrImages() throws {
        let pack = try VAEFixture.pack(.f32).path
        let refs = try VAEFixture.refs("vae_video")
        let u8 = try refs.info("vae_video.enc5.video_uint8").shape  // [T, H, W, 3]
        let bytes = Array(try refs.rawBytes("vae_video.enc5.video_uint8"))
        let frameBytes = u8[1] * u8[2] * u8[3]
        let folder = path("clip")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        var files: [String] = []
        for t in 0 ..< u8[0] {
            // Names whose plain string order differs from frame order (f10 < f2): the folder is read numerically.
            let f = (folder as NSString).appendingPathComponent("f\(t == 0 ? 0 : t * 5).png")
            try ImageFile.writePNG(Image8(width: u8[2], height: u8[1], channels: 3,
                                          pixels: Array(bytes[t * frameBytes ..< (t + 1) * frameBytes])), to: f)
            files.append(f)
        }
        let want = try refs.floats("vae_video.enc5.posterior_mean")
        for (how, args) in [("folder", ["--frames", folder]), ("images", files.flatMap { ["--image", $0] })] {
            let out = path("clip-\(how).safetensors")
            let r = try run(["vae-encode", "--pack", pack, "--out", out, "--tile", "24", "--json"] + args)
            #expect(r.status == 0, "\(how): \(r.stderr)")
            let got = try SafetensorsFile(path: out)
            #expect(try got.info("latents").shape == [1, 16, 2, 5, 7], "\(how)")
            let e = relL2(try got.floats("latents"), want)
            #expect(e < Tolerances.vaeF32, "\(how): clip posterior_mean rel L2 \(e)")
            let summary = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
            #expect(summary?["frames"] as? Int == 5, "\(how)")
        }
        // Refused: 4 frames (not 1 + 4k), a frame of another size, both inputs, an empty folder.
        let out = path("bad-clip.safetensors")
        let four = try run(["vae-encode", "--pack", pack, "--out", out] + files.prefix(4).flatMap { ["--image", $0] })
        #expect(four.status != 0 && four.stderr.contains("1 + 4k frames, found 4") && four.stderr.contains("keep the first 1 or add 1"), "\(four.stderr)")
        let odd = path("odd.png")
        try ImageFile.writePNG(Image8(width: 16, height: 16, channels: 3, pixels: [UInt8](repeating: 7, count: 16 * 16 * 3)), to: odd)
        let mixed = try run(["vae-encode", "--pack", pack, "--out", out] + (files.prefix(4) + [odd]).flatMap { ["--image", $0] })
        #expect(mixed.status != 0 && mixed.stderr.contains("odd.png") && mixed.stderr.contains("16x16"), "\(mixed.stderr)")
        let both = try run(["vae-encode", "--pack", pack, "--out", out, "--image", files[0], "--frames", folder])
        #expect(both.status != 0 && both.stderr.contains("not both"), "\(both.stderr)")
        let empty = path("empty")
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        let none = try run(["vae-encode", "--pack", pack, "--out", out, "--frames", empty])
        #expect(none.status != 0 && none.stderr.contains("no .png"), "\(none.stderr)")
        #expect(noOutput(out))
    }

    @Test func badInputFailsCleanly() throws {
        let pack = try VAEFixture.pack(.f32).path
        let good = Array(repeating: Float(0.1), count: 16 * 4 * 4)
        func expectFailure(_ args: [String], out: String, mentions: String, _ what: String) throws {
            let r = try run(args)
            #expect(r.status != 0, "\(what): exit \(r.status)")
            #expect(r.stderr.contains(mentions), "\(what): stderr was \(r.stderr)")
            #expect(noOutput(out), "\(what): left an output behind")
        }
        var out = path("x.png")
        let wrongC = try writeLatents("c15.safetensors", Array(good.prefix(15 * 16)), shape: [1, 15, 1, 4, 4])
        try expectFailure(["vae-decode", "--pack", pack, "--latents", wrongC, "--out", out], out: out, mentions: "z_dim = 16", "wrong channels")
        let wrongRank = try writeLatents("r3.safetensors", good, shape: [16, 4, 4])
        try expectFailure(["vae-decode", "--pack", pack, "--latents", wrongRank, "--out", out], out: out, mentions: "expected shape", "wrong rank")
        var nan = good
        nan[7] = .nan
        let nanFile = try writeLatents("nan.safetensors", nan, shape: [1, 16, 1, 4, 4])
        try expectFailure(["vae-decode", "--pack", pack, "--latents", nanFile, "--out", out], out: out, mentions: "non-finite", "NaN")
        var inf = good
        inf[3] = -.infinity
        let infFile = try writeLatents("inf.safetensors", inf, shape: [1, 16, 4, 4])
        try expectFailure(["vae-decode", "--pack", pack, "--latents", infFile, "--out", out], out: out, mentions: "non-finite", "inf")
        let noLatents = try writeLatents("other.safetensors", good, shape: [1, 16, 1, 4, 4], tensor: "x")
        try expectFailure(["vae-decode", "--pack", pack, "--latents", noLatents, "--out", out], out: out, mentions: "latents", "missing tensor")
        let ok = try writeLatents("ok.safetensors", good, shape: [1, 16, 1, 4, 4])
        try expectFailure(["vae-decode", "--pack", pack, "--latents", ok, "--out", out, "--max-ram", "1M"], out: out,
                          mentions: "--max-ram", "budget too small")
        let clip = try writeLatents("clip.safetensors", good + good, shape: [1, 16, 2, 4, 4])
        try expectFailure(["vae-decode", "--pack", pack, "--latents", clip, "--out", out], out: out, mentions: ".safetensors", "clip to PNG")
        try expectFailure(["vae-decode", "--pack", pack, "--latents", ok, "--out", out, "--component", "vae_x"], out: out,
                          mentions: "vae_x", "missing component")
        // Images: too small (7 px side), too many pixels, not an image.
        out = path("l.safetensors")
        var tiny = Image8(width: 7, height: 16, channels: 3, pixels: [UInt8](repeating: 9, count: 7 * 16 * 3))
        let tinyPNG = path("tiny.png")
        try ImageFile.writePNG(tiny, to: tinyPNG)
        try expectFailure(["vae-encode", "--pack", pack, "--image", tinyPNG, "--out", out], out: out, mentions: "too small", "tiny image")
        tiny = Image8(width: 64, height: 64, channels: 3, pixels: [UInt8](repeating: 9, count: 64 * 64 * 3))
        let big = path("big.png")
        try ImageFile.writePNG(tiny, to: big)
        try expectFailure(["vae-encode", "--pack", pack, "--image", big, "--out", out, "--max-pixels", "1000"], out: out,
                          mentions: "pixels", "huge image")
        let notImage = path("not.png")
        try Data("hello".utf8).write(to: URL(fileURLWithPath: notImage))
        try expectFailure(["vae-encode", "--pack", pack, "--image", notImage, "--out", out], out: out, mentions: "not.png", "not an image")
        // Refuses to overwrite without --force.
        try Data("keep".utf8).write(to: URL(fileURLWithPath: out))
        let r = try run(["vae-encode", "--pack", pack, "--image", big, "--out", out])
        #expect(r.status != 0 && r.stderr.contains("--force"))
        #expect(try String(contentsOfFile: out, encoding: .utf8) == "keep")
    }

    /// Shards truncated by another program while `vae-decode` has them mapped: SIGBUS becomes an error
    /// naming the file (exit 1, no output), never a silent crash. Every decoder shard is cut at once, so
    /// the one in use faults on its next read; the run is repeated with another delay when the decode
    /// finished first or had not mapped a shard yet (then the size check at open refuses it).
    @Test func aShardTruncatedWhileMappedIsReportedByName() throws {
        let src = try VAEFixture.pack(.f32).path
        let latents = try writeLatents("big.safetensors", (0 ..< 16 * 64 * 64).map { Float(($0 * 7919) % 200) / 100 - 1 },
                                       shape: [1, 16, 1, 64, 64])
        var delay = 0.3
        for attempt in 1 ... 6 {
            let pack = path("trunc\(attempt).pack")
            try FileManager.default.copyItem(atPath: src, toPath: pack)
            defer { try? FileManager.default.removeItem(atPath: pack) }
            let shards = try FileManager.default.contentsOfDirectory(atPath: pack + "/vae")
                .filter { $0.hasPrefix("decoder.") && $0.hasSuffix(".qwshard") }.map { pack + "/vae/" + $0 }
            let out = path("trunc.png")
            let p = Process()
            p.executableURL = URL(fileURLWithPath: Self.binary)
            p.arguments = ["vae-decode", "--pack", pack, "--latents", latents, "--out", out, "--max-ram", "80M", "--threads", "1"]
            let err = Pipe()
            p.standardError = err
            p.standardOutput = FileHandle.nullDevice
            try p.run()
            Thread.sleep(forTimeInterval: delay)
            for s in shards { #expect(truncate(s, 4096) == 0) }
            let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            #expect(p.terminationReason == .exit, "killed by signal \(p.terminationStatus): \(stderr)")
            if stderr.contains("truncated or replaced while it was being read") {
                #expect(p.terminationStatus == 1)
                #expect(stderr.contains("/vae/decoder.") && stderr.contains(".qwshard"), "\(stderr)")
                #expect(!FileManager.default.fileExists(atPath: out))
                return
            }
            // Too late (the decode finished) or too early (refused at open by the size check): try again.
            #expect(p.terminationStatus == 0 || stderr.contains(".qwshard"), "\(stderr)")
            delay = p.terminationStatus == 0 ? delay / 2 : delay * 1.5
        }
        Issue.record("the truncation never landed while a shard was mapped in 6 attempts")
    }
}
