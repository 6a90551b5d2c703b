import Foundation
import NIOCore
import Quant
import QwenImage

/// Limits and settings of `qwen-run serve` that the worker applies.
struct ServeSettings: Sendable {
    var packPath: String
    var maxBatchPrompts: Int
    var batchWait: Double
    var maxQueue: Int
    var queueTimeout: Double
    var maxPixels: Int
    var textBudget: Int?
    var vaeBudget: Int
}

/// The models, loaded once and used by the worker thread only (the server's one compute thread, which
/// drives the kernels' thread pool).
final class ServeModels {
    let pack: Pack
    let settings: ServeSettings
    let text: PromptEncoder?
    private var edit: EditPromptEncoder?
    private var image21: ImagePromptEncoder21?
    /// Qwen-Image 2.1 pack (Qwen3-VL text encoder): image prompts take `ImagePromptEncoder21`.
    lazy var isQwenImage21: Bool = (try? ReferenceImages.isQwenImage21(pack: pack)) ?? false
    private var vaePacks: [String: VAEPack] = [:]
    private var vaeModels: [String: AutoencoderKLQwenImage] = [:]

    init(settings: ServeSettings) throws {
        self.settings = settings
        pack = try Pack(path: settings.packPath)
        text = pack.components.contains("text_encoder") ? try PromptEncoder(pack: pack, packPath: settings.packPath) : nil
        // The VAEs are opened up front so that a broken component is reported at start, not on a request.
        for c in ["vae", "vae_rgba"] where pack.components.contains(c) { vaePacks[c] = try VAEPack(pack: pack, name: c) }
    }

    var components: [String] { pack.components.sorted() }

    func textEncoder() throws -> PromptEncoder {
        guard let text else {
            throw QwenImageError.missingComponent(pack: settings.packPath, component: "text_encoder",
                                                  hint: "this server cannot encode prompts; convert the checkpoint with --components text_encoder,tokenizer")
        }
        return text
    }

    /// The Edit encoder shares the text encoder's language model; its vision tower loads on first use.
    func editEncoder() throws -> EditPromptEncoder {
        if let edit { return edit }
        let t = try textEncoder()
        let e = try EditPromptEncoder(model: t.model, tokenizer: t.tokenizer, tower: try VisionTower(pack: pack),
                                      processor: try ReferenceImages.processor(pack: pack))
        edit = e
        return e
    }

    /// Qwen-Image 2.1's image-conditioned encoder, sharing the text encoder's language model.
    func image21Encoder() throws -> ImagePromptEncoder21 {
        if let image21 { return image21 }
        let t = try textEncoder()
        let e = try ImagePromptEncoder21(model: t.model, tokenizer: t.tokenizer, tower: try Qwen3VisionTower(pack: pack),
                                         processor: try ReferenceImages.processor(pack: pack))
        image21 = e
        return e
    }

    func vaePack(_ component: String) throws -> VAEPack {
        guard let p = vaePacks[component] else {
            throw QwenImageError.missingComponent(pack: settings.packPath, component: component, hint: "this server has no \(component) VAE")
        }
        return p
    }

    func vae(_ component: String, parts: AutoencoderKLQwenImage.Parts, temporal: Bool) throws -> AutoencoderKLQwenImage {
        let key = "\(component)/\(parts == .encoder ? "enc" : "dec")/\(temporal)"
        if let m = vaeModels[key] { return m }
        let m = try vaePack(component).model(parts: parts, temporal: temporal)
        vaeModels[key] = m
        return m
    }
}

/// The request queue and the one worker thread that runs the models. Text prompts that wait together
/// (same max_sequence_length) go through the layers as one batch: the weights are read once for all.
final class ServeWorker: @unchecked Sendable {
    struct Item {
        let job: ServeJob
        let promise: EventLoopPromise<ServeResponse>
        let enqueued: Double
    }

    private let cond = NSCondition()
    private var items: [Item] = []
    private var stopping = false
    private var busy = false
    private var served = 0
    private var batches = 0
    private let models: ServeModels
    let settings: ServeSettings
    private let log: @Sendable (String) -> Void

    init(models: ServeModels, log: @escaping @Sendable (String) -> Void) {
        self.models = models
        self.settings = models.settings
        self.log = log
    }

    static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    /// Queues a job; returns the refusal when the queue is full or the server is stopping.
    func submit(_ job: ServeJob, promise: EventLoopPromise<ServeResponse>) -> ServeResponse? {
        cond.lock()
        defer { cond.unlock() }
        if stopping { return .error(503, "the server is shutting down") }
        guard items.count < settings.maxQueue else {
            var r = ServeResponse.error(503, "\(items.count) requests are already waiting (--max-queue \(settings.maxQueue)); retry later")
            r.headers["Retry-After"] = "1"
            return r
        }
        items.append(Item(job: job, promise: promise, enqueued: Self.now()))
        cond.signal()
        return nil
    }

    var status: [String: Any] {
        cond.lock()
        defer { cond.unlock() }
        return ["queued": items.count, "busy": busy, "served": served, "batches": batches]
    }

    /// Stops taking jobs and waits until the queued ones are answered.
    func shutdown() {
        cond.lock()
        stopping = true
        cond.broadcast()
        while !items.isEmpty || busy { cond.wait() }
        cond.unlock()
    }

    /// The worker thread's loop.
    func run() {
        while let batch = take() {
            execute(batch)
            cond.lock()
            busy = false
            served += batch.count
            batches += 1
            cond.broadcast()
            cond.unlock()
        }
    }

    /// The next batch: the oldest job, and with a text job every other waiting text job of the same
    /// max_sequence_length, up to --max-batch prompts (negative prompts count). An idle worker waits
    /// --batch-wait for company first. Jobs older than --queue-timeout are answered 503 here.
    private func take() -> [Item]? {
        cond.lock()
        defer { cond.unlock() }
        while true {
            while items.isEmpty && !stopping { cond.wait() }
            if items.isEmpty { return nil }
            if settings.batchWait > 0, case .text = items[0].job, !stopping {
                let deadline = Date().addingTimeInterval(settings.batchWait)
                while items.count < settings.maxBatchPrompts && cond.wait(until: deadline) {}
            }
            let now = Self.now()
            items.removeAll { item in
                guard now - item.enqueued > settings.queueTimeout else { return false }
                item.promise.succeed(.error(503, "waited \(Int(now - item.enqueued)) s in the queue, longer than --queue-timeout \(Int(settings.queueTimeout)) s"))
                return true
            }
            if items.isEmpty { continue }
            var picked = [items.removeFirst()]
            if case .text(let first) = picked[0].job {
                var prompts = first.negativePrompt == nil ? 1 : 2
                var rest: [Item] = []
                for item in items {
                    if case .text(let t) = item.job, t.maxSequenceLength == first.maxSequenceLength,
                       prompts + (t.negativePrompt == nil ? 1 : 2) <= settings.maxBatchPrompts {
                        picked.append(item)
                        prompts += t.negativePrompt == nil ? 1 : 2
                    } else {
                        rest.append(item)
                    }
                }
                items = rest
            }
            busy = true
            return picked
        }
    }

    private func execute(_ batch: [Item]) {
        let start = Self.now()
        if batch.count > 1 || { if case .text = batch[0].job { return true } else { return false } }() {
            let texts = batch.map { item -> ServeJob.Text in
                if case .text(let t) = item.job { return t }
                preconditionFailure("a text batch holds text jobs only")
            }
            let answers = encodeTexts(texts)
            for (item, answer) in zip(batch, answers) { finish(item, answer, batchSize: batch.count, start: start) }
            return
        }
        let item = batch[0]
        let answer: ServeResponse
        do {
            switch item.job {
            case .text: preconditionFailure("handled above")
            case .edit(let e): answer = try encodeEdit(e)
            case .vaeEncode(let v): answer = try vaeEncode(v)
            case .vaeDecode(let v): answer = try vaeDecode(v)
            }
        } catch {
            answer = .from(error)
        }
        finish(item, answer, batchSize: 1, start: start)
    }

    private func finish(_ item: Item, _ answer: ServeResponse, batchSize: Int, start: Double) {
        var r = answer
        let end = Self.now()
        r.headers["X-Batch-Size"] = String(batchSize)
        r.headers["X-Queue-Seconds"] = String(format: "%.3f", start - item.enqueued)
        r.headers["X-Compute-Seconds"] = String(format: "%.3f", end - start)
        item.promise.succeed(r)
    }

    // MARK: - Jobs

    /// Text prompts of several requests in one pass over the weights; each prompt (and negative prompt)
    /// is its own group, so each answer is padded to its own length, exactly as alone.
    private func encodeTexts(_ jobs: [ServeJob.Text]) -> [ServeResponse] {
        var answers = [ServeResponse?](repeating: nil, count: jobs.count)
        let encoder: PromptEncoder
        do { encoder = try models.textEncoder() } catch { return jobs.map { _ in .from(error) } }
        // Tokenize each request on its own: a bad prompt fails its request only.
        var tokenized: [TemplatedPrompt] = []
        var owners: [Int] = []
        var warnings = [[String]](repeating: [], count: jobs.count)
        for (j, job) in jobs.enumerated() {
            do {
                let t = try encoder.tokenize([job.prompt] + (job.negativePrompt.map { [$0] } ?? [])) { warnings[j].append($0) }
                tokenized += t
                owners += Array(repeating: j, count: t.count)
            } catch {
                answers[j] = .from(error)
            }
        }
        guard !tokenized.isEmpty else { return answers.map { $0! } }
        do {
            let model = encoder.model
            let plan = try TextEncoderPlan.choose(config: model.config, weights: model.weightFootprint(),
                                                  sequenceLengths: tokenized.map { $0.ids.count },
                                                  budget: settings.textBudget, baselineBytes: ProcessStats.currentRSS())
            let results = try encoder.encode(tokenized: tokenized, groups: Array(repeating: 1, count: tokenized.count),
                                             maxSequenceLength: jobs[owners[0]].maxSequenceLength, plan: plan)
            var next = 0
            for (j, job) in jobs.enumerated() where answers[j] == nil {
                var w = SafetensorsWriter(metadata: ["producer": "qwen-run serve", "format": "pt"])
                try w.add(results[next], prefix: "", bf16: job.bf16)
                if job.negativePrompt != nil { try w.add(results[next + 1], prefix: "negative_", bf16: job.bf16) }
                let tokens = tokenized[next].ids.count + (job.negativePrompt != nil ? tokenized[next + 1].ids.count : 0)
                next += job.negativePrompt == nil ? 1 : 2
                answers[j] = try respond(w, format: job.format, extra: ["tokens": tokens, "batch_prompts": tokenized.count,
                                                                         "warnings": warnings[j]])
            }
        } catch {
            for j in answers.indices where answers[j] == nil { answers[j] = .from(error) }
        }
        return answers.map { $0! }
    }

    private func encodeEdit(_ job: ServeJob.Edit) throws -> ServeResponse {
        if models.isQwenImage21 { return try encodeImage21(job) }
        guard job.outputResolution == nil else {
            throw ServeError.bad("\"output_resolution\" applies to Qwen-Image 2.1 packs; the Edit pipelines' resize is chosen by \"mode\"")
        }
        let encoder = try models.editEncoder()
        let mode = job.mode ?? ReferenceImages.defaultMode(imageCount: job.images.count)
        let (sources, names) = try decodeImages(job)
        let (imageEmbeds, input) = try ReferenceImages.embed(images: sources, names: names, pack: models.pack, mode: mode,
                                                             preresize: job.preresize, tower: encoder.tower,
                                                             processor: encoder.processor)
        let groups = [[job.text.prompt]] + (job.text.negativePrompt.map { [[$0]] } ?? [])
        let (results, sequences) = try encoder.encode(groups, mode: mode, grids: input.grids, imageEmbeds: imageEmbeds)
        var w = SafetensorsWriter(metadata: ["producer": "qwen-run serve", "format": "pt", "mode": mode.rawValue])
        try w.add(results[0], prefix: "", bf16: job.text.bf16)
        if results.count > 1 { try w.add(results[1], prefix: "negative_", bf16: job.text.bf16) }
        return try respond(w, format: job.text.format, extra: [
            "mode": mode.rawValue, "tokens": sequences.reduce(0) { $0 + $1.ids.count },
            "image_grid_thw": input.grids.map { [$0.t, $0.h, $0.w] }, "batch_prompts": sequences.count,
        ])
    }

    /// The request's images, decoded (transparency kept), with the names errors use.
    private func decodeImages(_ job: ServeJob.Edit) throws -> (sources: [VisionSourceImage], names: [String]) {
        let names = job.images.indices.map { "images[\($0)]" }
        let sources = try zip(job.images, names).map { data, name in
            try ReferenceImages.source(ImageFile.decode(data, name: name, keepAlpha: true, maxPixels: settings.maxPixels), name: name)
        }
        return (sources, names)
    }

    /// Qwen-Image 2.1: the image-conditioned template, with `image_pad_mask` in the answer.
    private func encodeImage21(_ job: ServeJob.Edit) throws -> ServeResponse {
        guard job.mode == nil else {
            throw ServeError.bad("\"mode\" selects a first-generation Edit template; this server runs a Qwen-Image 2.1 pack")
        }
        let encoder = try models.image21Encoder()
        let (sources, names) = try decodeImages(job)
        let (features, input) = try encoder.embed(images: sources, names: names, outputResolution: job.preresize ? job.outputResolution ?? 1024 : nil)
        let groups = [[job.text.prompt]] + (job.text.negativePrompt.map { [[$0]] } ?? [])
        let (results, tokens) = try encoder.encode(groups, grids: input.grids, features: features)
        var w = SafetensorsWriter(metadata: ["producer": "qwen-run serve", "format": "pt", "model": "qwen-image-2.1"])
        try w.add(results[0], prefix: "", bf16: job.text.bf16)
        if results.count > 1 { try w.add(results[1], prefix: "negative_", bf16: job.text.bf16) }
        return try respond(w, format: job.text.format, extra: [
            "template": "image-conditioned-2.1", "tokens": tokens, "image_grid_thw": input.grids.map { [$0.t, $0.h, $0.w] },
        ])
    }

    private func vaeEncode(_ job: ServeJob.VAEEncode) throws -> ServeResponse {
        let config = try models.vaePack(job.component).config
        let img = try ImageFile.decode(job.image, name: "request image", keepAlpha: config.inputChannels == 4, maxPixels: settings.maxPixels)
        guard img.channels == config.inputChannels else {
            throw QwenImageError.image(path: "request image", message: "the \(job.component) VAE takes \(config.inputChannels) channels, the image has \(img.channels)")
        }
        let model = try models.vae(job.component, parts: .encoder, temporal: false)
        let (mean, logvar, report) = try model.encode(VAEFrames(image: img), tiling: .maxRAM(settings.vaeBudget))
        if job.normalize { try model.normalize(mean) }
        let w = try VAEIO.latentsWriter(mean: mean, logvar: logvar, normalized: job.normalize, component: job.component,
                                        producer: "qwen-run serve")
        return try respond(w, format: job.format, extra: ["image": [img.width, img.height, img.channels],
                                                          "tiles": report.segments.map(\.tiles).reduce(0, +)])
    }

    private func vaeDecode(_ job: ServeJob.VAEDecode) throws -> ServeResponse {
        let config = try models.vaePack(job.component).config
        // The safetensors bytes go through the same strict reader as files: a private temporary file.
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("qwen-run-serve-\(getpid())-\(UUID().uuidString).safetensors")
        try job.latents.write(to: tmp)
        defer { try? FileManager.default.removeItem(at: tmp) }
        let z: VAEFrames
        do {
            z = try VAEIO.latents(try SafetensorsFile(path: tmp.path), label: "latents", config: config, component: job.component,
                                  oneFrame: job.format == .png ? "a PNG holds one image: ask for format json or safetensors" : nil)
        } catch let e as QuantError {
            throw ServeError.bad("latents: \(e.description.replacingOccurrences(of: tmp.path, with: "request body"))")
        }
        let model = try models.vae(job.component, parts: .decoder, temporal: z.frames > 1)
        if job.denormalize { try model.denormalize(z) }
        let (x, _) = try model.decode(z, tiling: .maxRAM(settings.vaeBudget))
        try VAEIO.checkFinite(x, label: "latents")
        func png() throws -> Data {
            job.png16 ? try ImageFile.png16Data(width: x.width, height: x.height, channels: x.channels, samples: x.samples16(frame: 0), name: "decoded image")
                      : try ImageFile.pngData(x.image8(frame: 0), name: "decoded image")
        }
        if job.format == .png { return ServeResponse(status: 200, contentType: "image/png", body: try png()) }
        var w = SafetensorsWriter(metadata: ["producer": "qwen-run serve", "component": job.component])
        try w.add("sample", f32: x.cthw(), shape: [1, x.channels, x.frames, x.height, x.width])
        var extra: [String: Any] = ["decoded": [x.frames, x.height, x.width, x.channels]]
        if job.format == .json && x.frames == 1 { extra["png"] = try png().base64EncodedString() }
        return try respond(w, format: job.format, extra: extra)
    }

    private func respond(_ w: SafetensorsWriter, format: ServeFormat, extra: [String: Any]) throws -> ServeResponse {
        switch format {
        case .safetensors: return ServeResponse(status: 200, contentType: "application/octet-stream", body: try w.serialized())
        case .json, .png: return ServeResponse(status: 200, contentType: "application/json", body: try w.json(extra: extra))
        }
    }
}
