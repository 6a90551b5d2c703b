import Foundation
import NIOCore
import NIOHTTP1
import Quant
import QwenImage

/// What every connection handler shares: the worker, the limits, the token, counters.
final class ServeContext: Sendable {
    let worker: ServeWorker
    let maxBody: Int
    let readTimeoutSeconds: Int
    let token: [UInt8]?
    let components: [String]
    let started = ServeWorker.now()
    let log: @Sendable (String) -> Void

    init(worker: ServeWorker, maxBody: Int, readTimeoutSeconds: Int, token: String?, components: [String],
         log: @escaping @Sendable (String) -> Void) {
        self.worker = worker
        self.maxBody = maxBody
        self.readTimeoutSeconds = readTimeoutSeconds
        self.token = token.map { Array($0.utf8) }
        self.components = components
        self.log = log
    }

    /// `Authorization: Bearer TOKEN`, compared in constant time.
    func authorized(_ head: HTTPRequestHead) -> Bool {
        guard let token else { return true }
        guard let value = head.headers.first(name: "authorization"), value.lowercased().hasPrefix("bearer ") else { return false }
        let given = Array(value.utf8.dropFirst(7))
        var diff = UInt8(given.count == token.count ? 0 : 1)
        for i in 0 ..< given.count { diff |= given[i] ^ token[i % token.count] }
        return diff == 0
    }
}

/// One HTTP/1.1 connection: NIO parses the requests (HTTPServerPipelineHandler keeps them in order);
/// this handler gathers each body under --max-body, routes it, and answers. Compute requests are
/// parsed here and queued to the worker; the answer is written when its promise completes.
final class ServeHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    enum State { case idle, receiving, discarding, waiting }

    static let routes = ["GET /health", "POST /v1/encode", "POST /v1/vae/encode", "POST /v1/vae/decode"]

    private let shared: ServeContext
    private var state = State.idle
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var received = ServeWorker.now()
    private var discarded = 0

    init(shared: ServeContext) { self.shared = shared }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body = []
            state = .receiving
            received = ServeWorker.now()
            if let n = h.headers.first(name: "content-length").flatMap({ Int($0) }), n > shared.maxBody {
                tooLarge(context, h, declared: n)
            }
        case .body(let chunk):
            if state == .discarding {
                // Read (and drop) the rest of a refused body before closing: closing with unread bytes
                // would reset the connection and could destroy the 413 before the client reads it.
                discarded += chunk.readableBytes
                if discarded > 1 << 30 { context.close(promise: nil) }
                return
            }
            guard state == .receiving, let h = head else { return }
            if body.count + chunk.readableBytes > shared.maxBody {
                tooLarge(context, h, declared: nil)
                return
            }
            body.append(contentsOf: chunk.readableBytesView)
        case .end:
            if state == .discarding { return context.close(promise: nil) }
            guard state == .receiving, let h = head else { return }
            state = .waiting
            let bytes = Data(body)
            body = []
            route(context, h, bytes)
        }
    }

    /// 413 at once; the connection is closed when the refused body has been read (see `.body`).
    private func tooLarge(_ context: ChannelHandlerContext, _ h: HTTPRequestHead, declared: Int?) {
        body = []
        discarded = 0
        let size = declared.map { "a \(ByteSize.format($0)) body" } ?? "a body larger than that"
        respond(context, h, .error(413, "request body too large: the limit is \(ByteSize.format(shared.maxBody)) (--max-body), found \(size)"),
                keepAlive: false, closeAfter: false)
        state = .discarding
    }

    private func route(_ context: ChannelHandlerContext, _ h: HTTPRequestHead, _ bytes: Data) {
        let parts = h.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        let path = parts.first.map(String.init) ?? "/"
        let query = parts.count > 1 ? parts[1] : nil
        guard Self.routes.contains(where: { $0.hasSuffix(" " + path) }) else {
            return respond(context, h, .error(404, "no route \(h.method.rawValue) \(path) (routes: \(Self.routes.joined(separator: ", ")))"))
        }
        let wanted: HTTPMethod = path == "/health" ? .GET : .POST
        guard h.method == wanted else {
            var r = ServeResponse.error(405, "\(path) takes \(wanted.rawValue), found \(h.method.rawValue)")
            r.headers["Allow"] = wanted.rawValue
            return respond(context, h, r)
        }
        if path == "/health" {
            var info = shared.worker.status
            info["status"] = "ok"
            info["components"] = shared.components
            info["uptime_seconds"] = Int(ServeWorker.now() - shared.started)
            return respond(context, h, .json(200, info))
        }
        guard shared.authorized(h) else {
            var r = ServeResponse.error(401, "missing or wrong bearer token: send the header `Authorization: Bearer TOKEN` (the server's --token-file or QWEN_RUN_TOKEN)")
            r.headers["WWW-Authenticate"] = "Bearer"
            return respond(context, h, r)
        }
        let job: ServeJob
        do {
            let contentType = h.headers.first(name: "content-type")
            let accept = h.headers.first(name: "accept")
            switch path {
            case "/v1/encode":
                if let query, !query.isEmpty { throw ServeError.bad("POST /v1/encode takes its fields in the JSON body, not in the query") }
                job = try ServeRequest.encode(body: bytes, accept: accept)
            case "/v1/vae/encode": job = try ServeRequest.vaeEncode(body: bytes, query: query, contentType: contentType, accept: accept)
            default: job = try ServeRequest.vaeDecode(body: bytes, query: query, contentType: contentType, accept: accept)
            }
        } catch {
            return respond(context, h, .from(error))
        }
        let promise = context.eventLoop.makePromise(of: ServeResponse.self)
        if let refusal = shared.worker.submit(job, promise: promise) {
            promise.succeed(refusal)
        }
        promise.futureResult.assumeIsolated().whenSuccess { answer in
            self.respond(context, h, answer)
        }
    }

    private func respond(_ context: ChannelHandlerContext, _ h: HTTPRequestHead, _ r: ServeResponse, keepAlive: Bool = true,
                         closeAfter: Bool = true) {
        let keep = keepAlive && h.isKeepAlive
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: r.contentType)
        headers.add(name: "Content-Length", value: String(r.body.count))
        for (k, v) in r.headers.sorted(by: { $0.key < $1.key }) { headers.add(name: k, value: v) }
        headers.add(name: "Connection", value: keep ? "keep-alive" : "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: h.version, status: HTTPResponseStatus(statusCode: r.status), headers: headers))),
                      promise: nil)
        var buffer = context.channel.allocator.buffer(capacity: r.body.count)
        buffer.writeBytes(r.body)
        context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        let uri = h.uri.count > 80 ? String(h.uri.prefix(80)) + "…" : h.uri
        shared.log("\(h.method.rawValue) \(uri) \(r.status) \(String(format: "%.3f", ServeWorker.now() - received)) s"
                   + (r.headers["X-Batch-Size"].map { " batch \($0)" } ?? ""))
        if keep {
            state = .idle
        } else if closeAfter {
            done.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
    }

    /// A connection silent for --read-timeout while sending a request gets 408 and is closed; an idle
    /// keep-alive connection is closed. A request being computed is not timed out here.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read else {
            return context.fireUserInboundEventTriggered(event)
        }
        switch state {
        case .waiting: return
        case .receiving:
            if let h = head { respond(context, h, .error(408, "the request was not received completely within --read-timeout (\(shared.readTimeoutSeconds) s)"), keepAlive: false) }
        case .idle, .discarding:
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
