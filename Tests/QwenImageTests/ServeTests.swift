import Foundation
import Quant
import Testing
@testable import QwenImage

/// `qwen-run serve` end to end: the binary built beside the test bundle, on a free port, driven by a real
/// HTTP client (curl) and, for bytes no client would send, by bash's /dev/tcp. Answers must equal what
/// the CLI writes for the same input; concurrent prompts must be batched and still equal their solo
/// answers; malformed requests must get a 4xx with a message, never take the server down.
@Suite("qwen-run serve", .serialized)
struct ServeTests {
    static let dir: URL = {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("qwen-serve-tests-\(getpid())")
        try? FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d
    }()

    static func path(_ name: String) -> String { dir.appendingPathComponent("\(UInt32.random(in: 0 ... .max))-\(name)").path }

    /// A running server; `stop()` sends SIGTERM and returns the exit status.
    final class Server {
        let process = Process()
        let port: Int
        let errPath: String

        init(_ args: [String], env: [String: String] = [:]) throws {
            process.executableURL = URL(fileURLWithPath: QwenRunProcess.binary)
            process.arguments = ["serve", "--port", "0", "--json"] + args
            var e = ProcessInfo.processInfo.environment
            e["QWEN_RUN_TOKEN"] = nil
            for (k, v) in env { e[k] = v }
            process.environment = e
            let out = Pipe()
            errPath = ServeTests.path("serve.err")
            _ = FileManager.default.createFile(atPath: errPath, contents: nil)
            process.standardOutput = out
            process.standardError = FileHandle(forWritingAtPath: errPath)
            try process.run()
            // The first stdout line says where it listens.
            var line = Data()
            let deadline = Date().addingTimeInterval(120)
            while !line.contains(0x0A) && Date() < deadline {
                let chunk = out.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                line.append(chunk)
            }
            guard let obj = try? JSONSerialization.jsonObject(with: line.prefix { $0 != 0x0A }) as? [String: Any],
                  let port = obj["port"] as? Int else {
                process.terminate()
                throw ServeError("the server did not start: \(String(decoding: line, as: UTF8.self)) \((try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")")
            }
            self.port = port
        }

        var url: String { "http://127.0.0.1:\(port)" }
        var stderr: String { (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "" }

        func stop() -> Int32 {
            process.interrupt()
            process.waitUntilExit()
            return process.terminationStatus
        }
        deinit { if process.isRunning { process.terminate(); process.waitUntilExit() } }
    }

    struct ServeError: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }

    struct Reply {
        let status: Int
        let headers: [String: String]
        let body: Data
        var text: String { String(decoding: body, as: UTF8.self) }
        var json: [String: Any] { ((try? JSONSerialization.jsonObject(with: body)) as? [String: Any]) ?? [:] }
    }

    /// curl, started (not waited for): `finish` collects the reply.
    final class Curl {
        let process = Process()
        let bodyPath = ServeTests.path("body"), headPath = ServeTests.path("head")
        init(_ url: String, _ args: [String]) throws {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["curl", "-s", "-S", "--max-time", "120", "-o", bodyPath, "-D", headPath] + args + [url]
            try process.run()
        }
        func finish() throws -> Reply {
            process.waitUntilExit()
            guard process.terminationStatus == 0 else { throw ServeError("curl exited with \(process.terminationStatus)") }
            let head = try String(contentsOfFile: headPath, encoding: .utf8)
            var status = 0
            var headers: [String: String] = [:]
            for line in head.split(whereSeparator: \.isNewline) {
                if line.hasPrefix("HTTP/") { status = Int(line.split(separator: " ")[1]) ?? 0; continue }
                if let c = line.firstIndex(of: ":") {
                    headers[line[..<c].lowercased()] = line[line.index(after: c)...].trimmingCharacters(in: .whitespaces)
                }
            }
            return Reply(status: status, headers: headers, body: (try? Data(contentsOf: URL(fileURLWithPath: bodyPath))) ?? Data())
        }
    }

    static func curl(_ url: String, _ args: [String] = []) throws -> Reply { try Curl(url, args).finish() }

    static func post(_ server: Server, _ route: String, json: String, _ args: [String] = []) throws -> Reply {
        let f = path("req.json")
        try Data(json.utf8).write(to: URL(fileURLWithPath: f))
        return try curl(server.url + route, ["-H", "Content-Type: application/json", "--data-binary", "@" + f] + args)
    }

    /// Bytes no HTTP client sends, through bash's /dev/tcp; returns what the server answered.
    static func raw(_ port: Int, _ script: String) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = ["-c", "exec 3<>/dev/tcp/127.0.0.1/\(port); \(script); timeout 10 cat <&3"]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    /// The f32 `prompt_embeds` of a JSON answer.
    static func floats(_ tensor: Any?) throws -> [Float] {
        guard let t = tensor as? [String: Any], t["dtype"] as? String == "F32", let b64 = t["data"] as? String,
              let data = Data(base64Encoded: b64) else { throw ServeError("not an F32 JSON tensor: \(String(describing: tensor).prefix(200))") }
        return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    static func cli(_ args: [String]) throws -> SafetensorsFile {
        let out = path("cli.safetensors")
        let r = try QwenRunProcess.run(args + ["--out", out])
        guard r.status == 0 else { throw ServeError("qwen-run \(args.first ?? "") failed: \(r.stderr)") }
        return try SafetensorsFile(path: out)
    }

    func jsonString(_ s: String) -> String {
        String(decoding: try! JSONSerialization.data(withJSONObject: [s], options: []), as: UTF8.self).dropFirst().dropLast().description
    }

    @Test func encodeAnswersEqualTheCLI() throws {
        let pack = try TinyPacks.path(.f32)
        let server = try Server(["--pack", pack])
        let prompt = "A cat sitting on a red sofa, oil painting"
        let want = try Self.cli(["encode", "--pack", pack, "--prompt", prompt, "--negative-prompt", " "])
        // JSON answer.
        let j = try Self.post(server, "/v1/encode", json: #"{"prompt": \#(jsonString(prompt)), "negative_prompt": " "}"#)
        #expect(j.status == 200, "\(j.text)")
        for name in ["prompt_embeds", "negative_prompt_embeds"] {
            #expect(try Self.floats(j.json[name]) == (try want.floats(name)), "\(name) differs from qwen-run encode")
            #expect(try (j.json[name] as? [String: Any])?["shape"] as? [Int] == (try want.info(name).shape))
        }
        let mask = j.json["prompt_embeds_mask"] as? [String: Any]
        #expect(try mask?["dtype"] as? String == "I64" && mask?["shape"] as? [Int] == (try want.info("prompt_embeds_mask").shape))
        // Safetensors answer (Accept header), bf16.
        let s = try Self.post(server, "/v1/encode", json: #"{"prompt": \#(jsonString(prompt)), "dtype": "bf16"}"#,
                              ["-H", "Accept: application/octet-stream"])
        #expect(s.status == 200 && s.headers["content-type"] == "application/octet-stream")
        let f = Self.path("served.safetensors")
        try s.body.write(to: URL(fileURLWithPath: f))
        let got = try SafetensorsFile(path: f)
        #expect(try got.info("prompt_embeds").dtype == .BF16)
        let wantBF16 = try want.floats("prompt_embeds").map { Float(bitPattern: UInt32(HalfFloat.f32ToBF16($0)) << 16) }
        #expect(try got.floats("prompt_embeds") == wantBF16)
        #expect(try got.data("prompt_embeds_mask") == (try want.data("prompt_embeds_mask")))
        #expect(server.stop() == 0)
    }

    @Test func concurrentPromptsAreBatchedAndEqualTheirSoloAnswers() throws {
        let pack = try TinyPacks.path(.f32)
        // A long batch wait so that the requests started together meet in the queue.
        let server = try Server(["--pack", pack, "--batch-wait", "1500", "--max-batch", "8"])
        let prompts = (0 ..< 6).map { "prompt \($0): " + String(repeating: "a small red fox ", count: 1 + $0 * 3) }
        let curls = try prompts.map { p -> Curl in
            let f = Self.path("req.json")
            try Data(#"{"prompt": \#(jsonString(p))}"#.utf8).write(to: URL(fileURLWithPath: f))
            return try Curl(server.url + "/v1/encode", ["--data-binary", "@" + f])
        }
        let replies = try curls.map { try $0.finish() }
        var largest = 0
        for (p, r) in zip(prompts, replies) {
            #expect(r.status == 200, "\(r.text)")
            largest = max(largest, Int(r.headers["x-batch-size"] ?? "0") ?? 0)
            let solo = try Self.cli(["encode", "--pack", pack, "--prompt", p])
            #expect(try Self.floats(r.json["prompt_embeds"]) == (try solo.floats("prompt_embeds")), "batched answer differs for '\(p)'")
            #expect(try (r.json["prompt_embeds"] as? [String: Any])?["shape"] as? [Int] == (try solo.info("prompt_embeds").shape))
        }
        #expect(largest > 1, "no two of 6 simultaneous requests shared a batch")
        let health = try Self.curl(server.url + "/health")
        #expect(health.json["served"] as? Int == 6)
        #expect((health.json["batches"] as? Int ?? 6) < 6)
        #expect(server.stop() == 0)
    }

    @Test func vaeAndEditRoutesEqualTheCLI() throws {
        let pack = try TinyPacks.path(.f32)
        let server = try Server(["--pack", pack])
        let png = VisionFixtures.ref("images/vae_enc0.png")
        // Encode: raw PNG body, options in the query, safetensors back.
        let want = try Self.cli(["vae-encode", "--pack", pack, "--image", png, "--normalize"])
        let e = try Self.curl(server.url + "/v1/vae/encode?normalize=true&format=safetensors", ["--data-binary", "@" + png])
        #expect(e.status == 200, "\(e.text)")
        let latents = Self.path("latents.safetensors")
        try e.body.write(to: URL(fileURLWithPath: latents))
        #expect(try SafetensorsFile(path: latents).floats("latents") == (try want.floats("latents")))
        // The same as JSON with a base64 image.
        let b64 = try Data(contentsOf: URL(fileURLWithPath: png)).base64EncodedString()
        let ej = try Self.post(server, "/v1/vae/encode", json: #"{"image": "\#(b64)", "normalize": true}"#)
        #expect(try Self.floats(ej.json["latents"]) == (try want.floats("latents")))
        // Decode back to a PNG: the same bytes as the CLI's.
        let wantPNG = Self.path("cli.png")
        let d = try QwenRunProcess.run(["vae-decode", "--pack", pack, "--latents", latents, "--denormalize", "--out", wantPNG])
        #expect(d.status == 0, "\(d.stderr)")
        let dp = try Self.curl(server.url + "/v1/vae/decode?denormalize=1", ["--data-binary", "@" + latents, "-H", "Accept: image/png"])
        #expect(dp.status == 200 && dp.headers["content-type"] == "image/png")
        #expect(try dp.body == (try Data(contentsOf: URL(fileURLWithPath: wantPNG))), "decoded PNG differs from qwen-run vae-decode's")
        // Edit prompt with a reference image.
        let image = VisionFixtures.ref("images/edit_A.png")
        let wantEdit = try Self.cli(["encode", "--pack", pack, "--prompt", "make it blue", "--image", image])
        let img64 = try Data(contentsOf: URL(fileURLWithPath: image)).base64EncodedString()
        let ed = try Self.post(server, "/v1/encode", json: #"{"prompt": "make it blue", "images": ["\#(img64)"]}"#)
        #expect(ed.status == 200, "\(ed.text)")
        #expect(try Self.floats(ed.json["prompt_embeds"]) == (try wantEdit.floats("prompt_embeds")))
        #expect(server.stop() == 0)
    }

    /// A Qwen-Image 2.1 pack: an image prompt takes the 2.1 template and answers image_pad_mask too.
    @Test func qwenImage21ImagePromptEqualsTheCLI() throws {
        let pack = try Gen2VisionTests.pack(.f32)
        let refs = try Gen2VisionTests.refs()
        let pngs = try ["A", "B"].map { try Gen2VisionTests.png($0, refs) }
        let server = try Server(["--pack", pack])
        let want = try Self.cli(["encode", "--pack", pack, "--prompt", "a fox", "--preresize", "none",
                                 "--image", pngs[0], "--image", pngs[1]])
        let b64 = try pngs.map { "\"" + (try Data(contentsOf: URL(fileURLWithPath: $0)).base64EncodedString()) + "\"" }
        let r = try Self.post(server, "/v1/encode", json: #"{"prompt": "a fox", "preresize": false, "images": [\#(b64.joined(separator: ","))]}"#)
        #expect(r.status == 200, "\(r.text)")
        #expect(try Self.floats(r.json["prompt_embeds"]) == (try want.floats("prompt_embeds")))
        let pad = try #require(r.json["image_pad_mask"] as? [String: Any])
        let shape = try want.info("image_pad_mask").shape
        #expect(pad["dtype"] as? String == "BOOL" && (pad["shape"] as? [Int]) == shape)
        // output_resolution: the pipeline's resize to that area (64²: image A, 96x64, becomes 64x64; B, 64x160, 32x96).
        let wantRes = try Self.cli(["encode", "--pack", pack, "--prompt", "a fox", "--output-resolution", "64",
                                    "--image", pngs[0], "--image", pngs[1]])
        let rr = try Self.post(server, "/v1/encode", json: #"{"prompt": "a fox", "output_resolution": 64, "images": [\#(b64.joined(separator: ","))]}"#)
        #expect(rr.status == 200, "\(rr.text)")
        #expect(try Self.floats(rr.json["prompt_embeds"]) == (try wantRes.floats("prompt_embeds")))
        let badRes = try Self.post(server, "/v1/encode", json: #"{"prompt": "a", "output_resolution": 4, "images": [\#(b64[0])]}"#)
        #expect(badRes.status == 400 && badRes.text.contains("output_resolution"), "\(badRes.text)")
        // A first-generation Edit mode is refused with the reason; the server stays up.
        let bad = try Self.post(server, "/v1/encode", json: #"{"prompt": "a", "mode": "edit-plus", "images": [\#(b64[0])]}"#)
        #expect(bad.status == 400 && bad.text.contains("mode"), "\(bad.status) \(bad.text)")
        #expect(server.stop() == 0)
    }

    @Test func malformedRequestsGetClearErrorsAndTheServerStaysUp() throws {
        let pack = try TinyPacks.path(.f32)
        let server = try Server(["--pack", pack, "--max-body", "64K", "--read-timeout", "1"])
        func expect(_ r: Reply, _ status: Int, _ mentions: String, _ what: String) {
            #expect(r.status == status, "\(what): status \(r.status), body \(r.text)")
            #expect((r.json["error"] as? String ?? "").contains(mentions), "\(what): \(r.text)")
        }
        expect(try Self.post(server, "/v1/encode", json: #"{"prompt": "#), 400, "not valid JSON", "truncated JSON")
        expect(try Self.post(server, "/v1/encode", json: #"["a cat"]"#), 400, "expected a JSON object", "array body")
        expect(try Self.post(server, "/v1/encode", json: #"{"promt": "a cat"}"#), 400, "unknown field 'promt'", "typo")
        expect(try Self.post(server, "/v1/encode", json: #"{"prompt": 7}"#), 400, "prompt: expected a string", "wrong type")
        expect(try Self.post(server, "/v1/encode", json: #"{"prompt": ""}"#), 400, "empty", "empty prompt")
        expect(try Self.post(server, "/v1/encode", json: #"{"prompt": "a", "prompt": "b"}"#), 400, "appears twice", "duplicate key")
        expect(try Self.post(server, "/v1/encode", json: #"{"prompt": "a", "max_sequence_length": 5000}"#), 400, "1 ... 1024", "range")
        expect(try Self.post(server, "/v1/encode", json: #"{"prompt": "a", "images": ["%%%"]}"#), 400, "base64", "bad base64")
        expect(try Self.post(server, "/v1/encode", json: #"{"prompt": "a", "images": ["aGVsbG8="]}"#), 400, "images[0]", "not an image")
        expect(try Self.post(server, "/v1/encode", json: String(repeating: "[", count: 5000)), 400, "not valid JSON", "deep nesting")
        expect(try Self.curl(server.url + "/v1/vae/encode", ["--data-binary", "not an image"]), 400, "request image", "vae garbage")
        expect(try Self.curl(server.url + "/v1/vae/encode?normalise=1", ["--data-binary", "x"]), 400, "unknown field 'normalise'", "query typo")
        expect(try Self.curl(server.url + "/v1/vae/decode", ["--data-binary", "12345678garbage"]), 400, "latents", "decode garbage")
        let wrongShape = #"{"latents": {"dtype": "F32", "shape": [1, 15, 1, 2, 2], "data": "\#(Data(count: 240).base64EncodedString())"}}"#
        expect(try Self.post(server, "/v1/vae/decode", json: wrongShape), 400, "z_dim = 16", "wrong channels")
        let shortData = #"{"latents": {"dtype": "F32", "shape": [1, 16, 1, 2, 2], "data": "AAAA"}}"#
        expect(try Self.post(server, "/v1/vae/decode", json: shortData), 400, "needs 256 bytes", "short data")
        // Found by fuzzing: a shape whose byte count overflows used to trap in the safetensors writer.
        let hugeShape = #"{"latents": {"dtype": "F32", "shape": [1, 16, 1, 33647118, 44073709550616, 1], "data": "AAAA"}}"#
        expect(try Self.post(server, "/v1/vae/decode", json: hugeShape), 400, "too large", "overflowing shape")
        expect(try Self.curl(server.url + "/v2/encode"), 404, "no route", "unknown route")
        expect(try Self.curl(server.url + "/v1/encode"), 405, "takes POST", "GET on a POST route")
        let big = Self.path("big.bin")
        try Data(count: 200_000).write(to: URL(fileURLWithPath: big))
        expect(try Self.curl(server.url + "/v1/vae/encode", ["--data-binary", "@" + big]), 413, "--max-body", "body too large")
        // Chunked upload without a length, over the limit.
        expect(try Self.curl(server.url + "/v1/vae/encode", ["-H", "Transfer-Encoding: chunked", "--data-binary", "@" + big]), 413,
               "--max-body", "chunked body too large")
        // Not HTTP at all: NIO's parser answers 400 and closes.
        let garbage = try Self.raw(server.port, #"printf 'HELLO THERE\r\n\r\n' >&3"#)
        #expect(garbage.hasPrefix("HTTP/1.1 400"), "garbage got: \(garbage.prefix(120))")
        // A client that sends half a request and goes silent: 408 after --read-timeout, connection closed.
        let slow = try Self.raw(server.port, #"printf 'POST /v1/encode HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"pro' >&3"#)
        #expect(slow.hasPrefix("HTTP/1.1 408"), "slow client got: \(slow.prefix(120))")
        // Still serving.
        let ok = try Self.post(server, "/v1/encode", json: #"{"prompt": "still here"}"#)
        #expect(ok.status == 200, "\(ok.text)")
        #expect(try Self.curl(server.url + "/health").json["status"] as? String == "ok")
        #expect(server.stop() == 0, "\(server.stderr)")
    }

    @Test func aTokenIsRequiredWhenSet() throws {
        let pack = try TinyPacks.path(.f32, components: ["vae"])
        let server = try Server(["--pack", pack], env: ["QWEN_RUN_TOKEN": "s3cret-token"])
        let png = VisionFixtures.ref("images/vae_enc0.png")
        let none = try Self.curl(server.url + "/v1/vae/encode", ["--data-binary", "@" + png])
        #expect(none.status == 401 && none.headers["www-authenticate"] == "Bearer")
        let wrong = try Self.curl(server.url + "/v1/vae/encode", ["--data-binary", "@" + png, "-H", "Authorization: Bearer s3cret-tokeN"])
        #expect(wrong.status == 401)
        let right = try Self.curl(server.url + "/v1/vae/encode", ["--data-binary", "@" + png, "-H", "Authorization: Bearer s3cret-token"])
        #expect(right.status == 200, "\(right.text)")
        #expect(try Self.curl(server.url + "/health").status == 200)
        // This pack has no text encoder: a clear 404 naming the component.
        let noText = try Self.post(server, "/v1/encode", json: #"{"prompt": "a cat"}"#, ["-H", "Authorization: Bearer s3cret-token"])
        #expect(noText.status == 404 && noText.text.contains("text_encoder"), "\(noText.text)")
        #expect(server.stop() == 0)
    }
}
