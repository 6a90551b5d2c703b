import Foundation
import Kernels
import Quant

/// How to split the spatial work.
public enum VAETiling: Sendable, Equatable {
    /// One tile per segment (the whole image).
    case whole
    /// Tiles of this many image pixels per side (latent-resolution segments use side / 8).
    case tile(Int)
    /// The largest tiles whose estimated peak memory fits this many bytes (the whole image when it fits).
    case maxRAM(Int)
}

/// What a run did, for summaries and tests.
public struct VAERunReport: Sendable {
    /// Per tiled segment: name, tile count, tile rows × cols (segment output units).
    public var segments: [(name: String, tiles: Int, tileH: Int, tileW: Int)] = []
    /// Multiply-adds actually computed (halo recomputation included).
    public var macs: Double = 0
    /// Estimated peak bytes of the plan (weights, frames, working sets).
    public var estimatedPeakBytes = 0
    /// Largest number of pool buffers live at once (tests check it against the estimate).
    public var peakLiveBuffers = 0
    public init() {}
}

/// diffusers' `AutoencoderKLQwenImage` (the Wan 2.1 video VAE fine-tuned for Qwen-Image): encoder,
/// `quant_conv`, `post_quant_conv`, decoder.
///
/// Each network is `segment A → mid-block attention (whole frame, latent resolution) → segment B`; the
/// segments are chains of convolution stages that run tile by tile with exact halos (VAERegion.swift),
/// which works because every norm here is per pixel. Stills use the 2-D reduction (only the `t2` slice of
/// each causal convolution is loaded); clips (`temporal`) stream frame by frame with the 2-frame caches
/// and the time convolutions.
public final class AutoencoderKLQwenImage: @unchecked Sendable {
    public enum Parts: Sendable { case encoder, decoder, both }

    public let config: VAEConfig
    /// Whether clip weights (t0, t1 slices, time_conv) were loaded.
    public let temporal: Bool
    /// Bytes of weights held (for --max-ram planning).
    public let weightBytes: Int
    /// Pack bytes per stored weight (4 for f32, 2 for bf16, about 1 for q8s), for the budget errors' hint.
    private let bytesPerStoredWeight: Double

    private let encoderA: VAESegment?, encoderAttention: MidAttention?, encoderB: VAESegment?
    private let decoderA: VAESegment?, decoderAttention: MidAttention?, decoderB: VAESegment?

    /// Process overhead assumed by the --max-ram planner besides weights and activations (runtime, code,
    /// libraries, I/O buffers).
    public static let baselineBytes = 48 << 20

    /// Builds the networks from `source` (scoped to the checkpoint root: `encoder.*`, `decoder.*`,
    /// `quant_conv.*`, `post_quant_conv.*`). `temporal` also loads the clip weights.
    public init(config: VAEConfig, source: TensorSource, parts: Parts = .both, temporal: Bool = false) throws {
        self.config = config
        self.temporal = temporal
        let src = CountingSource(source)
        let base = config.baseDim, z = config.zDim, mult = config.dimMult
        if config.isResidual {
            guard !temporal else { throw QwenImageError.invalidInput("the Qwen-Image 2.1 VAE encodes and decodes single images, not clips") }
            let e = parts != .decoder ? try Self.residualEncoder(src, config) : nil
            let d = parts != .encoder ? try Self.residualDecoder(src, config) : nil
            (encoderA, encoderAttention, encoderB) = (e?.0, e?.1, e?.2)
            (decoderA, decoderAttention, decoderB) = (d?.0, d?.1, d?.2)
            bytesPerStoredWeight = Double(src.counter.bytes) / Double(max(src.counter.elements, 1))
            weightBytes = src.counter.bytes + Self.derivedWeightBytes([decoderB].compactMap { $0 }, attentions: [encoderAttention, decoderAttention].compactMap { $0 })
            return
        }

        if parts != .decoder {
            // QwenImageEncoder3d: conv_in, down_blocks (flat list), mid_block, norm_out, conv_out; quant_conv.
            let encoder = src.prefix("encoder")
            let dims = [base] + mult.map { base * $0 }
            var st: [VAEStage] = [ConvStage(norm: nil, conv: try CausalConv3(encoder.prefix("conv_in"),
                                                                             cin: config.inputChannels, cout: dims[0], temporal: temporal))]
            let downBlocks = encoder.prefix("down_blocks")
            var k = 0
            for i in 0..<mult.count {
                var cin = dims[i]
                let cout = dims[i + 1]
                for _ in 0..<config.numResBlocks {
                    st.append(try ResidualStage(downBlocks.prefix(k), cin: cin, cout: cout, temporal: temporal))
                    k += 1
                    cin = cout
                }
                if i != mult.count - 1 {
                    st.append(try DownsampleStage(downBlocks.prefix(k), dim: cout,
                                                  temporalConv: config.temperalDownsample[i] && temporal))
                    k += 1
                }
            }
            let mid = dims.last!
            let midBlock = try Self.midBlock(encoder, dim: mid, temporal: temporal)
            encoderA = VAESegment(name: "encoder", stages: st + [midBlock.resnet0])
            encoderAttention = midBlock.attention
            encoderB = VAESegment(name: "encoder head", stages: [
                midBlock.resnet1,
                try Self.head(encoder, cin: mid, cout: 2 * z, temporal: temporal),
                PointwiseStage(try Conv1(src.prefix("quant_conv"), cin: 2 * z, cout: 2 * z, spatialDims: 3)),
            ])
        } else {
            encoderA = nil; encoderAttention = nil; encoderB = nil
        }

        if parts != .encoder {
            // post_quant_conv; QwenImageDecoder3d: conv_in, mid_block, up_blocks, norm_out, conv_out.
            let decoder = src.prefix("decoder")
            let dims = [base * mult.last!] + mult.reversed().map { base * $0 }
            let temporalUp = Array(config.temperalDownsample.reversed())
            let mid = dims[0]
            let midBlock = try Self.midBlock(decoder, dim: mid, temporal: temporal)
            decoderA = VAESegment(name: "decoder conv_in", stages: [
                PointwiseStage(try Conv1(src.prefix("post_quant_conv"), cin: z, cout: z, spatialDims: 3)),
                ConvStage(norm: nil, conv: try CausalConv3(decoder.prefix("conv_in"), cin: z, cout: mid, temporal: temporal)),
                midBlock.resnet0,
            ])
            decoderAttention = midBlock.attention
            var st: [VAEStage] = [midBlock.resnet1]
            let upBlocks = decoder.prefix("up_blocks")
            for i in 0..<mult.count {
                let block = upBlocks.prefix(i)
                var cin = i > 0 ? dims[i] / 2 : dims[i]
                let cout = dims[i + 1]
                for j in 0...config.numResBlocks {
                    st.append(try ResidualStage(block.prefix("resnets").prefix(j), cin: cin, cout: cout, temporal: temporal))
                    cin = cout
                }
                if i != mult.count - 1 {
                    st.append(try UpsampleStage(block.prefix("upsamplers").prefix(0), dim: cout,
                                                temporalConv: temporalUp[i], loadTime: temporal))
                }
            }
            st.append(try Self.head(decoder, cin: dims.last!, cout: config.inputChannels, temporal: temporal))
            decoderB = VAESegment(name: "decoder", stages: st)
        } else {
            decoderA = nil; decoderAttention = nil; decoderB = nil
        }
        bytesPerStoredWeight = Double(src.counter.bytes) / Double(max(src.counter.elements, 1))
        weightBytes = src.counter.bytes + Self.derivedWeightBytes([decoderB].compactMap { $0 }, attentions: [encoderAttention, decoderAttention].compactMap { $0 })
    }

    /// Weights built at load time beside the pack's: the upsamplers' four f32 parity kernels
    /// (16·cin·cout floats each; 196 MB for the 2.1 decoder, whose upsamplers keep 1152 channels) and the
    /// mid-block attentions' f32 q / kv matrices (3·C² floats).
    private static func derivedWeightBytes(_ segments: [VAESegment], attentions: [MidAttention]) -> Int {
        attentions.reduce(0) { $0 + 12 * $1.dim * $1.dim } + upsamplerBytes(segments)
    }

    private static func upsamplerBytes(_ segments: [VAESegment]) -> Int {
        func bytes(_ st: VAEStage) -> Int {
            if let up = st as? UpsampleStage { return up.parityBytes }
            if let block = st as? ShortcutBlockStage { return block.chain.reduce(0) { $0 + bytes($1) } }
            return 0
        }
        return segments.flatMap(\.stages).reduce(0) { $0 + bytes($1) }
    }

    /// `QwenImageMidBlock`: resnets.0, attentions.0, resnets.1 (the attention splits the tiled segments).
    private static func midBlock(_ network: TensorSource, dim: Int, temporal: Bool, twoD: Bool = false) throws
        -> (resnet0: ResidualStage, attention: MidAttention, resnet1: ResidualStage) {
        let block = network.prefix("mid_block")
        let resnets = block.prefix("resnets")
        return (try ResidualStage(resnets.prefix(0), cin: dim, cout: dim, temporal: temporal, twoD: twoD),
                try MidAttention(block.prefix("attentions").prefix(0), dim: dim),
                try ResidualStage(resnets.prefix(1), cin: dim, cout: dim, temporal: temporal, twoD: twoD))
    }

    // MARK: - The 2.1 residual networks

    /// `QwenImage21Encoder3d` (is_residual): conv_in, down_blocks.i = ResidualDownBlock (resnets.j, downsampler
    /// except in the last stage, AvgDown shortcut), mid_block, norm_out, conv_out; then quant_conv. The
    /// downsamplers' time_conv is never applied to an image (not loaded; the converter drops it).
    private static func residualEncoder(_ src: TensorSource, _ c: VAEConfig) throws -> (VAESegment, MidAttention, VAESegment) {
        let encoder = src.prefix("encoder")
        let dims = c.encoderDims, n = c.dimMult.count
        var st: [VAEStage] = [ConvStage(norm: nil, conv: try CausalConv3(encoder.prefix("conv_in"), cin: c.inputChannels, cout: dims[0],
                                                                         temporal: false, twoD: true))]
        for i in 0..<n {
            let block = encoder.prefix("down_blocks").prefix(i)
            var chain: [VAEStage] = []
            var cin = dims[i]
            for j in 0..<c.numResBlocks {
                chain.append(try ResidualStage(block.prefix("resnets").prefix(j), cin: cin, cout: dims[i + 1], temporal: false, twoD: true))
                cin = dims[i + 1]
            }
            let down = i != n - 1
            if down { chain.append(try DownsampleStage(block.prefix("downsampler"), dim: dims[i + 1], temporalConv: false)) }
            let ft = down && c.temperalDownsample[i] ? 2 : 1
            st.append(ShortcutBlockStage(chain: chain, shortcut: .avgDown(ft: ft, fs: down ? 2 : 1, cin: dims[i], cout: dims[i + 1])))
        }
        let mid = dims.last!
        let m = try midBlock(encoder, dim: mid, temporal: false, twoD: true)
        let head = ConvStage(norm: try VAENorm(encoder.prefix("norm_out"), dim: mid),
                             conv: try CausalConv3(encoder.prefix("conv_out"), cin: mid, cout: 2 * c.zDim, temporal: false, twoD: true))
        return (VAESegment(name: "encoder", stages: st + [m.resnet0]), m.attention,
                VAESegment(name: "encoder head", stages: [
                    m.resnet1, head,
                    PointwiseStage(try Conv1(src.prefix("quant_conv"), cin: 2 * c.zDim, cout: 2 * c.zDim, spatialDims: 2)),
                ]))
    }

    /// post_quant_conv; `QwenImage21Decoder3d` (is_residual): conv_in, mid_block, up_blocks.i =
    /// ResidualUpBlock (num_res_blocks + 1 resnets, upsampler keeping the width except in the last stage,
    /// DupUp shortcut with first_chunk), norm_out, conv_out.
    private static func residualDecoder(_ src: TensorSource, _ c: VAEConfig) throws -> (VAESegment, MidAttention, VAESegment) {
        let decoder = src.prefix("decoder")
        let dims = c.decoderDims, n = c.dimMult.count, z = c.zDim
        let temporalUp = Array(c.temperalDownsample.reversed())
        let m = try midBlock(decoder, dim: dims[0], temporal: false, twoD: true)
        let a = VAESegment(name: "decoder conv_in", stages: [
            PointwiseStage(try Conv1(src.prefix("post_quant_conv"), cin: z, cout: z, spatialDims: 2)),
            ConvStage(norm: nil, conv: try CausalConv3(decoder.prefix("conv_in"), cin: z, cout: dims[0], temporal: false, twoD: true)),
            m.resnet0,
        ])
        var st: [VAEStage] = [m.resnet1]
        for i in 0..<n {
            let block = decoder.prefix("up_blocks").prefix(i)
            var chain: [VAEStage] = []
            var cin = dims[i]
            for j in 0...c.numResBlocks {
                chain.append(try ResidualStage(block.prefix("resnets").prefix(j), cin: cin, cout: dims[i + 1], temporal: false, twoD: true))
                cin = dims[i + 1]
            }
            let up = i != n - 1
            if up {
                chain.append(try UpsampleStage(block.prefix("upsampler"), dim: dims[i + 1], temporalConv: false, loadTime: false,
                                               outDim: dims[i + 1]))
            }
            st.append(ShortcutBlockStage(chain: chain, shortcut: up ? .dupUp(ft: temporalUp[i] ? 2 : 1, fs: 2, cin: dims[i], cout: dims[i + 1]) : nil))
        }
        st.append(ConvStage(norm: try VAENorm(decoder.prefix("norm_out"), dim: dims.last!),
                            conv: try CausalConv3(decoder.prefix("conv_out"), cin: dims.last!, cout: c.inputChannels, temporal: false, twoD: true)))
        return (a, m.attention, VAESegment(name: "decoder", stages: st))
    }

    /// norm_out → SiLU → conv_out, the last stage of both networks.
    private static func head(_ network: TensorSource, cin: Int, cout: Int, temporal: Bool) throws -> ConvStage {
        ConvStage(norm: try VAENorm(network.prefix("norm_out"), dim: cin),
                  conv: try CausalConv3(network.prefix("conv_out"), cin: cin, cout: cout, temporal: temporal))
    }

    // MARK: - Encode

    /// Encodes frames in [-1, 1] ([T, H, W, input_channels], T = 1 + 4k) to the posterior
    /// (mean, logvar), each [1 + k, H', W', z_dim] with H' = floor((H − 2)/2) + 1 applied per downsampling.
    /// `progress(done, total)` is called after every tile; `report` says what the run did.
    public func encode(_ x: VAEFrames, tiling: VAETiling = .whole, progress: (Int, Int) -> Void = { _, _ in }) throws
        -> (mean: VAEFrames, logvar: VAEFrames, report: VAERunReport) {
        guard let encA = encoderA, let attn = encoderAttention, let encB = encoderB else {
            throw QwenImageError.invalidInput("this VAE was loaded without its encoder")
        }
        guard x.channels == config.inputChannels else {
            throw QwenImageError.invalidInput("VAE encode: expected \(config.inputChannels)-channel frames, found \(x.channels) channels")
        }
        let tc = config.temporalCompression
        guard x.frames >= 1, (x.frames - 1) % tc == 0 else {
            throw QwenImageError.invalidInput("VAE encode: a clip must have 1 + \(tc)k frames, found \(x.frames) "
                + "(upstream silently drops the last \((x.frames - 1) % tc); trim the clip)")
        }
        guard x.frames == 1 || temporal else {
            throw QwenImageError.invalidInput("VAE encode: \(x.frames) frames given but the VAE was loaded for still images")
        }
        try checkFinite(x, what: "encoder input")
        let inSize = Size(h: x.height, w: x.width)
        guard let sizesA = encA.sizes(inSize) else {
            if config.isResidual {
                throw QwenImageError.invalidInput("VAE encode: image \(x.width)×\(x.height): the Qwen-Image 2.1 VAE needs both sides to be "
                    + "multiples of \(config.spatialCompression) (each of its \(config.dimMult.count - 1) downsamplings averages 2×2 blocks); resize or crop it")
            }
            throw QwenImageError.invalidInput("VAE encode: image \(x.width)×\(x.height) is too small: each side must "
                + "survive \(config.dimMult.count - 1) halvings n -> floor((n − 2)/2) + 1 with at least 2 pixels before each (minimum \(minimumSide()) pixels)")
        }
        let lat = sizesA.last!
        let tLat = 1 + (x.frames - 1) / tc
        let mid = encA.cout
        let frameBytes = 4 * (x.count + tLat * lat.pixels * (mid + 4 * config.zDim))
        let fixedA = Self.baselineBytes + weightBytes + frameBytes
        let tilesA = try chooseTiles(encA, sizes: sizesA, tiling: tiling, unit: config.spatialCompression, fixed: fixedA)
        let sizesB = encB.sizes(lat)!
        let tilesB = try chooseTiles(encB, sizes: sizesB, tiling: tiling, unit: config.spatialCompression, fixed: fixedA)
        let attnBytes = fixedA + 4 * MidAttention.workFloats(pixels: lat.pixels, dim: mid)
        try checkBudget(tiling, attnBytes, lat)

        let xs = VAEFrames(frames: tLat, height: lat.h, width: lat.w, channels: mid)
        let post = VAEFrames(frames: tLat, height: lat.h, width: lat.w, channels: 2 * config.zDim)
        let rep = run(encA, attn, encB, input: x, middle: xs, output: post, tilesA: tilesA, tilesB: tilesB,
                      attnBytes: attnBytes, progress: progress)

        // DiagonalGaussianDistribution: mean = channels [:z], logvar = channels [z:] clamped to [-30, 20].
        let z = config.zDim
        let mean = VAEFrames(frames: tLat, height: lat.h, width: lat.w, channels: z)
        let logvar = VAEFrames(frames: tLat, height: lat.h, width: lat.w, channels: z)
        for p in 0..<(tLat * lat.pixels) {
            (mean.data + p * z).update(from: post.data + p * 2 * z, count: z)
            for c in 0..<z { logvar.data[p * z + c] = min(max(post.data[p * 2 * z + z + c], -30), 20) }
        }
        return (mean, logvar, rep)
    }

    // MARK: - Decode

    /// Decodes latents [T, h, w, z_dim] to frames [1 + 4(T − 1), 8h, 8w, input_channels]; clamps to
    /// [-1, 1] like `AutoencoderKLQwenImage._decode` unless `clamp` is false (the decoder output).
    public func decode(_ z: VAEFrames, tiling: VAETiling = .whole, clamp: Bool = true,
                       progress: (Int, Int) -> Void = { _, _ in }) throws -> (frames: VAEFrames, report: VAERunReport) {
        guard let decA = decoderA, let attn = decoderAttention, let decB = decoderB else {
            throw QwenImageError.invalidInput("this VAE was loaded without its decoder")
        }
        guard z.channels == config.zDim else {
            throw QwenImageError.invalidInput("VAE decode: expected latents with z_dim = \(config.zDim) channels, found \(z.channels)")
        }
        guard z.frames >= 1, z.height >= 1, z.width >= 1 else {
            throw QwenImageError.invalidInput("VAE decode: empty latents [\(z.frames), \(z.height), \(z.width)]")
        }
        guard z.frames == 1 || temporal else {
            throw QwenImageError.invalidInput("VAE decode: \(z.frames) latent frames given but the VAE was loaded for still images")
        }
        try checkFinite(z, what: "latents")
        let lat = Size(h: z.height, w: z.width)
        let sizesA = decA.sizes(lat)!
        let mid = decA.cout
        let sizesB = decB.sizes(lat)!
        let outSize = sizesB.last!
        let tOut = 1 + config.temporalCompression * (z.frames - 1)
        let xs = VAEFrames(frames: z.frames, height: lat.h, width: lat.w, channels: mid)
        let outFloats = tOut * outSize.pixels * config.inputChannels
        // The caller typically converts the output once more (file layout): count it twice.
        // Memory by phase: segment A and the attention hold the latents and the mid-block frames;
        // segment B adds the output, counted twice (the caller converts it once more for the file).
        let fixedA = Self.baselineBytes + weightBytes + 4 * (z.count + xs.count)
        let fixedB = fixedA + 4 * 2 * outFloats
        let tilesA = try chooseTiles(decA, sizes: sizesA, tiling: tiling, unit: config.spatialCompression, fixed: fixedA)
        let tilesB = try chooseTiles(decB, sizes: sizesB, tiling: tiling, unit: 1, fixed: fixedB)
        let attnBytes = fixedA + 4 * MidAttention.workFloats(pixels: lat.pixels, dim: mid)
        try checkBudget(tiling, attnBytes, lat)

        let out = VAEFrames(frames: tOut, height: outSize.h, width: outSize.w, channels: config.inputChannels)
        let rep = run(decA, attn, decB, input: z, middle: xs, output: out, tilesA: tilesA, tilesB: tilesB,
                      attnBytes: attnBytes, progress: progress)
        if clamp {
            let v = out.values
            for i in 0..<v.count { v[i] = min(max(v[i], -1), 1) }
        }
        return (out, rep)
    }

    // MARK: - The skeleton both networks share

    /// Segment A tile by tile into `middle` (latent resolution), the mid-block attention on each of its
    /// frames (whole frame, in place), then segment B tile by tile into `output`. `progress` is called
    /// after every tile of either segment.
    private func run(_ a: VAESegment, _ attention: MidAttention, _ b: VAESegment, input: VAEFrames, middle: VAEFrames,
                     output: VAEFrames, tilesA: TileChoice, tilesB: TileChoice, attnBytes: Int,
                     progress: (Int, Int) -> Void) -> VAERunReport {
        let total = tilesA.tiles.count + tilesB.tiles.count
        var done = 0
        let tick = { done += 1; progress(done, total) }
        let pixels = middle.height * middle.width, dim = middle.channels

        var rep = VAERunReport()
        rep.segments.append((a.name, tilesA.tiles.count, tilesA.tileH, tilesA.tileW))
        rep.macs += tilesA.ws.macs * Double(input.frames)
        rep.peakLiveBuffers = a.run(input: input, output: middle, tiles: tilesA.tiles, temporal: temporal, onTile: tick)
        for t in 0..<middle.frames { attention.apply(middle.frame(t), pixels: pixels) }
        rep.macs += Double(middle.frames) * Double(pixels) * Double(dim * dim) * (4 + 2 * Double(pixels) / Double(dim))

        rep.segments.append((b.name, tilesB.tiles.count, tilesB.tileH, tilesB.tileW))
        rep.macs += tilesB.ws.macs * Double(middle.frames)
        rep.peakLiveBuffers = max(rep.peakLiveBuffers,
                                  b.run(input: middle, output: output, tiles: tilesB.tiles, temporal: temporal, onTile: tick))
        rep.estimatedPeakBytes = max(tilesA.bytes, tilesB.bytes, attnBytes)
        return rep
    }

    // MARK: - Latent normalization (the pipelines' convention)

    /// (mean − latents_mean) / latents_std, per channel, in place.
    public func normalize(_ x: VAEFrames) throws {
        let c = x.channels
        try checkLatentChannels(x, "normalize")
        for p in 0..<(x.count / c) {
            for ch in 0..<c { x.data[p * c + ch] = (x.data[p * c + ch] - config.latentsMean[ch]) / config.latentsStd[ch] }
        }
    }

    /// latents / (1 / latents_std) + latents_mean, per channel, in place (written as the pipelines do).
    public func denormalize(_ x: VAEFrames) throws {
        let c = x.channels
        try checkLatentChannels(x, "denormalize")
        let inv = config.latentsStd.map { 1 / $0 }
        for p in 0..<(x.count / c) {
            for ch in 0..<c { x.data[p * c + ch] = x.data[p * c + ch] / inv[ch] + config.latentsMean[ch] }
        }
    }

    private func checkLatentChannels(_ x: VAEFrames, _ what: String) throws {
        guard x.channels == config.zDim else {
            throw QwenImageError.invalidInput("VAE \(what): expected latents with z_dim = \(config.zDim) channels, found \(x.channels)")
        }
    }

    // MARK: - Planning

    /// Smallest image side the encoder accepts.
    public func minimumSide() -> Int {
        if config.isResidual { return config.spatialCompression }
        var n = 1
        while true {
            var s = n, ok = true
            for _ in 0..<(config.dimMult.count - 1) {
                if s < 2 { ok = false; break }
                s = (s - 2) / 2 + 1
            }
            if ok { return n }
            n += 1
        }
    }

    /// Work (multiply-adds) and segment sizes of a still decode / encode, for reports and benchmarks.
    struct TileChoice {
        var tiles: [Region]
        var tileH: Int, tileW: Int
        var ws: VAESegment.WorkingSet
        var bytes: Int
    }

    private func chooseTiles(_ seg: VAESegment, sizes: [Size], tiling: VAETiling, unit: Int, fixed: Int) throws -> TileChoice {
        let out = sizes.last!
        let slots = VAESegment.slots(temporal: temporal)
        func choice(_ th: Int, _ tw: Int) -> TileChoice {
            let tiles = VAESegment.grid(out, tileH: th, tileW: tw)
            let ws = seg.workingSet(tiles: tiles, sizes: sizes, temporal: temporal)
            return TileChoice(tiles: tiles, tileH: min(th, out.h), tileW: min(tw, out.w), ws: ws, bytes: fixed + ws.bytes(slots: slots))
        }
        switch tiling {
        case .whole:
            return choice(out.h, out.w)
        case .tile(let px):
            guard px >= 1 else { throw QwenImageError.invalidInput("--tile must be at least 1 pixel, got \(px)") }
            let side = max(1, px / unit)
            return choice(side, side)
        case .maxRAM(let budget):
            let whole = choice(out.h, out.w)
            if whole.bytes <= budget { return whole }
            // Split each side into k = 1…16 parts; keep the fitting choice with the least work.
            let minSide = max(1, 8 / unit)
            var best: TileChoice?
            var smallest: TileChoice?
            for kh in 1...16 {
                let th = (out.h + kh - 1) / kh
                if th < minSide && kh > 1 { break }
                for kw in 1...16 {
                    let tw = (out.w + kw - 1) / kw
                    if tw < minSide && kw > 1 { break }
                    let c = choice(th, tw)
                    if smallest == nil || c.bytes < smallest!.bytes { smallest = c }
                    if c.bytes <= budget && (best == nil || c.ws.macs < best!.ws.macs) { best = c }
                }
            }
            if let best { return best }
            let s = smallest!
            throw QwenImageError.budget("--max-ram \(ByteSize.format(budget)) is too small for the VAE \(seg.name): even "
                + "\(s.tileW)×\(s.tileH) tiles need about \(ByteSize.format(s.bytes)) (weights \(ByteSize.format(weightBytes)), "
                + "frames and fixed overhead \(ByteSize.format(fixed - weightBytes)), tile buffers \(ByteSize.format(s.bytes - fixed))). "
                + "Raise --max-ram\(smallerPackHint)")
        }
    }

    /// How to shrink the weights, from what this pack holds (weights per parameter).
    private var smallerPackHint: String {
        let bytesPerParam = bytesPerStoredWeight
        if bytesPerParam > 3 { return ", or use a bf16 / q8s pack to shrink the weights" }
        if bytesPerParam > 1.5 { return ", or use a q8s pack to shrink the weights" }
        return ""
    }

    private func checkBudget(_ tiling: VAETiling, _ attnBytes: Int, _ lat: Size) throws {
        if case .maxRAM(let budget) = tiling, attnBytes > budget {
            throw QwenImageError.budget("--max-ram \(ByteSize.format(budget)) is too small: the mid-block attention over "
                + "\(lat.w)×\(lat.h) latents needs about \(ByteSize.format(attnBytes)) (weights \(ByteSize.format(weightBytes))). "
                + "Raise --max-ram\(smallerPackHint)")
        }
    }

    private func checkFinite(_ x: VAEFrames, what: String) throws {
        let v = x.values
        for i in 0..<v.count where !v[i].isFinite {
            let c = i % x.channels, p = i / x.channels
            let col = p % x.width, row = (p / x.width) % x.height, f = p / (x.width * x.height)
            throw QwenImageError.invalidInput("VAE: \(what) contain a non-finite value (\(v[i])) at frame \(f), row \(row), "
                + "column \(col), channel \(c)")
        }
    }
}

/// Wraps a source and counts the bytes of what it hands out (all prefixes share one count).
private final class CountingSource: TensorSource {
    final class Counter { var bytes = 0, elements = 0 }
    let inner: TensorSource
    let counter: Counter
    var path: String { inner.path }
    init(_ inner: TensorSource, counter: Counter = Counter()) {
        self.inner = inner
        self.counter = counter
    }
    func matrix(_ name: String, _ layout: MatrixLayout) throws -> Weight {
        let w = try inner.matrix(name, layout)
        counter.bytes += qk_weight_bytes(w.raw.scheme, w.raw.group, w.raw.n, w.raw.k)
        counter.elements += Int(w.raw.n * w.raw.k)
        return w
    }
    func vector(_ name: String, shape: [Int]) throws -> [Float] {
        let v = try inner.vector(name, shape: shape)
        counter.bytes += 4 * v.count
        counter.elements += v.count
        return v
    }
    func prefix(_ name: String) -> CountingSource { CountingSource(inner.prefix(name), counter: counter) }
    func prefetch() { inner.prefetch() }
    func release() { inner.release() }
}
