import ArgumentParser
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Quant
import QwenImage

/// `qwen-run serve`: the pack's models behind a small HTTP/1.1 server. One event loop parses requests
/// (SwiftNIO); one worker thread computes, with the kernels' thread pool (--threads). Text prompts that
/// arrive together are encoded in one pass over the weights.
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve prompt encoding and the VAE over HTTP (one model load for many requests).",
        discussion: HelpText.reflow("""
        Routes (JSON answers by default; `Accept: application/octet-stream` or "format": "safetensors" gives the
        safetensors file the CLI would write; errors are {"error": "..."} with a 4xx status for bad requests):
          GET  /health          status, queue length, requests served (no token needed)
          POST /v1/encode       {"prompt": "...", "negative_prompt"?: " ", "images"?: [base64 PNG/JPEG],
                                "mode"?: "edit"|"edit-plus", "preresize"?: true, "max_sequence_length"?: 1024,
                                "dtype"?: "f32"|"bf16", "format"?: "json"|"safetensors"} -> prompt_embeds,
                                prompt_embeds_mask (and negative_*) as `qwen-run encode` writes them; on a
                                Qwen-Image 2.1 pack, images take its template ("output_resolution"?: 1024
                                instead of "mode") and the answer holds image_pad_mask
          POST /v1/vae/encode   PNG/JPEG bytes (options in the query: ?normalize=true&component=vae), or
                                {"image": base64, "normalize"?: false, "component"?: "vae"} -> latents, logvar
          POST /v1/vae/decode   a safetensors file with `latents` (options in the query: ?denormalize=true), or
                                {"latents": {"dtype": "F32", "shape": [1, 16, 1, h, w], "data": base64},
                                "denormalize"?: false, "png16"?: false} -> PNG (format png / Accept: image/png),
                                or JSON with `sample` and the PNG in base64
        JSON tensors are {"dtype": "F32", "shape": [...], "data": base64 of the little-endian values}.

        Requests wait in one queue (--max-queue; more get 503 with Retry-After). Text prompts waiting
        together with the same max_sequence_length are encoded as one batch (up to --max-batch prompts): the
        weights are read once for all of them, and each answer equals the one it would get alone. Bodies
        above --max-body get 413; a client that stays silent for --read-timeout gets 408. SIGINT / SIGTERM
        stop accepting connections and answer the queued requests before exiting.

        Binds 127.0.0.1 (this machine only) unless --host says otherwise; with a token (--token-file FILE or
        the environment variable QWEN_RUN_TOKEN) every /v1/ request must send `Authorization: Bearer TOKEN`.

        Examples:
          qwen-run serve --pack pack/ --port 8080
          curl -s localhost:8080/v1/encode -d '{"prompt": "a red fox in the snow"}' | jq '.prompt_embeds.shape'
          curl -s localhost:8080/v1/encode -H 'Accept: application/octet-stream' -d '{"prompt": "a fox"}' -o e.safetensors
          curl -s 'localhost:8080/v1/vae/encode?normalize=true' --data-binary @photo.png -o l.json
          curl -s 'localhost:8080/v1/vae/decode?format=png' --data-binary @latents.safetensors -o out.png
          QWEN_RUN_TOKEN=secret qwen-run serve --pack pack/ --host 0.0.0.0 --port 8080 --max-ram 2G --threads 2
        """))

    @Option(help: "Pack folder (from qwen-quant convert): text_encoder + tokenizer for /v1/encode, vae (or vae_rgba) for the VAE routes.")
    var pack: String

    @Option(help: "Address to listen on: 127.0.0.1 (this machine only, the default) or 0.0.0.0 (every interface).")
    var host = "127.0.0.1"

    @Option(help: "TCP port; 0 picks a free one (printed at start).")
    var port = 8080

    @Option(name: .customLong("token-file"), help: "A file whose first line is the bearer token every /v1/ request must send (or set QWEN_RUN_TOKEN).")
    var tokenFile: String?

    @Option(name: .customLong("max-body"), help: "Largest request body, e.g. 32M (the default); larger ones get 413.")
    var maxBody = "32M"

    @Option(name: .customLong("max-batch"), help: "Most prompts (negative prompts count) encoded together in one pass (default 16).")
    var maxBatch = 16

    @Option(name: .customLong("batch-wait"), help: "Milliseconds an idle server waits for more prompts before it starts a batch (default 10).")
    var batchWait = 10

    @Option(name: .customLong("max-queue"), help: "Most requests waiting; more get 503 (default 64).")
    var maxQueue = 64

    @Option(name: .customLong("queue-timeout"), help: "Seconds a request may wait in the queue before it gets 503 (default 600).")
    var queueTimeout = 600

    @Option(name: .customLong("read-timeout"), help: "Seconds a client may stay silent while sending a request, or idle between requests (default 30).")
    var readTimeout = 30

    @Option(name: .customLong("max-ram"), help: "Memory budget for a request, e.g. 1.5G: text batches are planned under it and VAE tiles fit it (default: the VAE commands' default).")
    var maxRam: String?

    @Option(name: .customLong("max-pixels"), help: "Largest image accepted, in pixels (default 16777216 = 4096x4096).")
    var maxPixels = 16 << 20

    @OptionGroup var common: CommonOptions

    func validate() throws {
        guard (0 ... 65535).contains(port) else { throw ValidationError("--port must be 0 ... 65535, got \(port)") }
        guard (1 ... 256).contains(maxBatch) else { throw ValidationError("--max-batch must be 1 ... 256, got \(maxBatch)") }
        guard (0 ... 10_000).contains(batchWait) else { throw ValidationError("--batch-wait must be 0 ... 10000 ms, got \(batchWait)") }
        guard (1 ... 100_000).contains(maxQueue) else { throw ValidationError("--max-queue must be 1 ... 100000, got \(maxQueue)") }
        guard queueTimeout >= 1 else { throw ValidationError("--queue-timeout must be at least 1 second, got \(queueTimeout)") }
        guard readTimeout >= 1 else { throw ValidationError("--read-timeout must be at least 1 second, got \(readTimeout)") }
        guard maxPixels >= 64 else { throw ValidationError("--max-pixels must be at least 64, got \(maxPixels)") }
        guard let b = ByteSize.parse(maxBody), b >= 1024, b <= 1 << 30 else {
            throw ValidationError("--max-body: expected a size from 1K to 1G (examples: 32M, 256M), got '\(maxBody)'")
        }
        if let maxRam, ByteSize.parse(maxRam) == nil {
            throw ValidationError("--max-ram: cannot read '\(maxRam)' as a size (examples: 800M, 1.5G)")
        }
    }

    func run() throws {
        try common.apply()
        let token = try readToken()
        let budget = maxRam.flatMap(ByteSize.parse).map(usableBudget)
        let settings = ServeSettings(packPath: pack, maxBatchPrompts: maxBatch, batchWait: Double(batchWait) / 1000,
                                     maxQueue: maxQueue, queueTimeout: Double(queueTimeout), maxPixels: maxPixels,
                                     textBudget: budget, vaeBudget: budget ?? ProcessStats.defaultBudget())
        let models: ServeModels
        do { models = try ServeModels(settings: settings) } catch {
            note("error: \(error)")
            throw ExitCode(1)
        }
        let log: @Sendable (String) -> Void = { note($0) }
        let worker = ServeWorker(models: models, log: log)
        let shared = ServeContext(worker: worker, maxBody: ByteSize.parse(maxBody)!, readTimeoutSeconds: readTimeout, token: token,
                                  components: models.components, log: log)
        let thread = Thread { worker.run() }
        thread.stackSize = 16 << 20
        thread.name = "qwen-run serve worker"
        thread.start()

        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let readTimeout = TimeAmount.seconds(Int64(self.readTimeout))
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: readTimeout))
                    try channel.pipeline.syncOperations.addHandler(ServeHTTPHandler(shared: shared))
                }
            }
            .childChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
        let channel: Channel
        do {
            channel = try bootstrap.bind(host: host, port: port).wait()
        } catch {
            note("error: cannot listen on \(host):\(port): \(error) (is another server on that port? try --port 0 for a free one)")
            try? group.syncShutdownGracefully()
            throw ExitCode(1)
        }
        let bound = channel.localAddress?.port ?? port
        let url = "http://\(host.contains(":") ? "[\(host)]" : host):\(bound)"
        if common.json {
            let line: [String: Any] = ["listening": url, "port": bound, "components": models.components,
                                       "routes": ServeHTTPHandler.routes, "token_required": token != nil]
            if let data = try? JSONSerialization.data(withJSONObject: line, options: [.sortedKeys, .withoutEscapingSlashes]) {
                FileHandle.standardOutput.write(data + Data("\n".utf8))
            }
        }
        note("listening on \(url) (components: \(models.components.joined(separator: ", ")); routes: \(ServeHTTPHandler.routes.joined(separator: ", ")))"
             + (token == nil ? "" : "; bearer token required"))

        // SIGINT / SIGTERM: stop accepting, answer what is queued, exit 0.
        var sources: [DispatchSourceSignal] = []
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler {
                note("stopping: answering the queued requests first")
                channel.close(promise: nil)
            }
            source.resume()
            sources.append(source)
        }
        try channel.closeFuture.wait()
        worker.shutdown()
        try? group.syncShutdownGracefully()
        sources.forEach { $0.cancel() }
        printSummary([("served", worker.status["served"] ?? 0), ("batches", worker.status["batches"] ?? 0),
                      ("peak_rss_bytes", ProcessStats.peakRSS())], json: false)
    }

    private func readToken() throws -> String? {
        var token: String?
        if let tokenFile {
            guard let data = FileManager.default.contents(atPath: tokenFile), let text = String(data: data, encoding: .utf8) else {
                throw ValidationError("--token-file \(tokenFile): cannot read it as UTF-8 text")
            }
            token = text.split(whereSeparator: \.isNewline).first.map { $0.trimmingCharacters(in: .whitespaces) }
            guard let t = token, !t.isEmpty else { throw ValidationError("--token-file \(tokenFile): the first line is empty") }
        } else if let env = ProcessInfo.processInfo.environment["QWEN_RUN_TOKEN"] {
            guard !env.trimmingCharacters(in: .whitespaces).isEmpty else { throw ValidationError("QWEN_RUN_TOKEN is set but empty") }
            token = env
        }
        if let token, token.utf8.count < 8 { throw ValidationError("the bearer token is \(token.utf8.count) characters; use at least 8") }
        return token
    }
}
