import Foundation

/// `AutoencoderKLQwenImage` settings, decoded from the VAE component's `config.json` (the file diffusers
/// writes). Names follow upstream, including its spelling `temperal_downsample`.
///
/// Qwen-Image 2.1's `AutoencoderKLQwenImage21` (`_class_name`) is the residual variant (`isResidual`):
/// 2-D convolutions, residual down / up blocks with parameter-free AvgDown / DupUp shortcuts, a wider
/// decoder (`decoder_base_dim`), RGBA `in_channels` / `out_channels`, single images only (docs/GEN2.md).
public struct VAEConfig: Codable, Equatable, Sendable {
    /// `AutoencoderKLQwenImage21` with `is_residual` (the only 2.1 layout supported).
    public var isResidual = false
    /// The 2.1 decoder's width base (nil: `base_dim`).
    public var decoderBaseDim: Int?
    public var baseDim: Int
    public var zDim: Int
    public var dimMult: [Int]
    public var numResBlocks: Int
    public var attnScales: [Double]
    public var temperalDownsample: [Bool]
    /// 3 (RGB) or 4 (RGBA, Qwen-Image-Layered). Older configs lack it: default 3.
    public var inputChannels: Int
    public var latentsMean: [Float]
    public var latentsStd: [Float]

    enum CodingKeys: String, CodingKey {
        case baseDim = "base_dim"
        case zDim = "z_dim"
        case dimMult = "dim_mult"
        case numResBlocks = "num_res_blocks"
        case attnScales = "attn_scales"
        case temperalDownsample = "temperal_downsample"
        case inputChannels = "input_channels"
        case latentsMean = "latents_mean"
        case latentsStd = "latents_std"
        case className = "_class_name"
        case isResidual = "is_residual"
        case decoderBaseDim = "decoder_base_dim"
        case inChannels = "in_channels"
        case outChannels = "out_channels"
        case patchSize = "patch_size"
    }

    public init(baseDim: Int = 96, zDim: Int = 16, dimMult: [Int] = [1, 2, 4, 4], numResBlocks: Int = 2,
                attnScales: [Double] = [], temperalDownsample: [Bool] = [false, true, true],
                inputChannels: Int = 3, latentsMean: [Float], latentsStd: [Float]) {
        self.baseDim = baseDim
        self.zDim = zDim
        self.dimMult = dimMult
        self.numResBlocks = numResBlocks
        self.attnScales = attnScales
        self.temperalDownsample = temperalDownsample
        self.inputChannels = inputChannels
        self.latentsMean = latentsMean
        self.latentsStd = latentsStd
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        if isResidual {
            try c.encode("AutoencoderKLQwenImage21", forKey: .className)
            try c.encode(true, forKey: .isResidual)
            try c.encodeIfPresent(decoderBaseDim, forKey: .decoderBaseDim)
            try c.encode(inputChannels, forKey: .inChannels)
            try c.encode(inputChannels, forKey: .outChannels)
        } else {
            try c.encode(inputChannels, forKey: .inputChannels)
        }
        try c.encode(baseDim, forKey: .baseDim)
        try c.encode(zDim, forKey: .zDim)
        try c.encode(dimMult, forKey: .dimMult)
        try c.encode(numResBlocks, forKey: .numResBlocks)
        try c.encode(attnScales, forKey: .attnScales)
        try c.encode(temperalDownsample, forKey: .temperalDownsample)
        try c.encode(latentsMean, forKey: .latentsMean)
        try c.encode(latentsStd, forKey: .latentsStd)
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let gen2 = try c.decodeIfPresent(String.self, forKey: .className) == "AutoencoderKLQwenImage21"
        if gen2 {
            // AutoencoderKLQwenImage21 defaults (diffusers 0.42.1).
            guard try c.decodeIfPresent(Bool.self, forKey: .isResidual) ?? true else {
                throw DecodingError.dataCorruptedError(forKey: .isResidual, in: c,
                    debugDescription: "is_residual false (the non-residual 2.1 layout) is not supported")
            }
            if let p = try c.decodeIfPresent(Int.self, forKey: .patchSize) {
                throw DecodingError.dataCorruptedError(forKey: .patchSize, in: c, debugDescription: "patch_size \(p) (patchified input) is not supported; expected null")
            }
            let inC = try c.decodeIfPresent(Int.self, forKey: .inChannels) ?? 4
            let outC = try c.decodeIfPresent(Int.self, forKey: .outChannels) ?? 4
            guard inC == outC else {
                throw DecodingError.dataCorruptedError(forKey: .outChannels, in: c, debugDescription: "in_channels \(inC) and out_channels \(outC) differ")
            }
            isResidual = true
            baseDim = try c.decodeIfPresent(Int.self, forKey: .baseDim) ?? 96
            decoderBaseDim = try c.decodeIfPresent(Int.self, forKey: .decoderBaseDim) ?? baseDim
            zDim = try c.decodeIfPresent(Int.self, forKey: .zDim) ?? 64
            dimMult = try c.decodeIfPresent([Int].self, forKey: .dimMult) ?? [1, 2, 4, 8, 8]
            numResBlocks = try c.decodeIfPresent(Int.self, forKey: .numResBlocks) ?? 2
            attnScales = []   // ignored upstream when is_residual
            temperalDownsample = try c.decodeIfPresent([Bool].self, forKey: .temperalDownsample) ?? [false, true, true, true]
            inputChannels = inC
            latentsMean = try c.decode([Float].self, forKey: .latentsMean)
            latentsStd = try c.decode([Float].self, forKey: .latentsStd)
            return
        }
        baseDim = try c.decodeIfPresent(Int.self, forKey: .baseDim) ?? 96
        zDim = try c.decodeIfPresent(Int.self, forKey: .zDim) ?? 16
        dimMult = try c.decodeIfPresent([Int].self, forKey: .dimMult) ?? [1, 2, 4, 4]
        numResBlocks = try c.decodeIfPresent(Int.self, forKey: .numResBlocks) ?? 2
        attnScales = try c.decodeIfPresent([Double].self, forKey: .attnScales) ?? []
        temperalDownsample = try c.decodeIfPresent([Bool].self, forKey: .temperalDownsample) ?? [false, true, true]
        inputChannels = try c.decodeIfPresent(Int.self, forKey: .inputChannels) ?? 3
        latentsMean = try c.decode([Float].self, forKey: .latentsMean)
        latentsStd = try c.decode([Float].self, forKey: .latentsStd)
    }

    /// Decodes and validates `config.json` bytes; `file` names the source in errors.
    public static func load(_ data: Data, file: String) throws -> VAEConfig {
        let cfg: VAEConfig
        do {
            cfg = try JSONDecoder().decode(VAEConfig.self, from: data)
        } catch {
            throw QwenImageError.config(file: file, message: "not a valid AutoencoderKLQwenImage config: \(error)")
        }
        try cfg.validate(file: file)
        return cfg
    }

    public func validate(file: String) throws {
        func bad(_ m: String) -> QwenImageError { .config(file: file, message: m) }
        guard baseDim >= 1 else { throw bad("base_dim must be >= 1, found \(baseDim)") }
        guard zDim >= 1 else { throw bad("z_dim must be >= 1, found \(zDim)") }
        guard !dimMult.isEmpty, dimMult.allSatisfy({ $0 >= 1 }) else {
            throw bad("dim_mult must be a non-empty list of positive integers, found \(dimMult)")
        }
        guard numResBlocks >= 1 else { throw bad("num_res_blocks must be >= 1, found \(numResBlocks)") }
        try ConfigLimits.check([("base_dim", baseDim, 4096), ("z_dim", zDim, 1024), ("num_res_blocks", numResBlocks, 64),
                                ("len(dim_mult)", dimMult.count, 16), ("max(dim_mult)", dimMult.max() ?? 0, 64)], fail: bad)
        // Both factors are bounded now, so the product cannot overflow.
        try ConfigLimits.check([("base_dim * max(dim_mult)", baseDim * (dimMult.max() ?? 0), ConfigLimits.width)], fail: bad)
        guard attnScales.isEmpty else {
            throw bad("attn_scales must be empty (attention outside the mid block is not supported), found \(attnScales)")
        }
        guard temperalDownsample.count == dimMult.count - 1 else {
            throw bad("temperal_downsample must have \(dimMult.count - 1) entries (one per downsampling), found \(temperalDownsample.count)")
        }
        guard inputChannels >= 1 && inputChannels <= 4 else {
            throw bad("input_channels must be 1...4, found \(inputChannels)")
        }
        guard latentsMean.count == zDim, latentsStd.count == zDim else {
            throw bad("latents_mean / latents_std must have z_dim = \(zDim) entries, found \(latentsMean.count) / \(latentsStd.count)")
        }
        guard latentsStd.allSatisfy({ $0 != 0 && $0.isFinite }) else { throw bad("latents_std must be finite and non-zero") }
        if isResidual {
            let dBase = decoderBaseDim ?? baseDim
            try ConfigLimits.check([("decoder_base_dim", dBase, 4096), ("decoder_base_dim * max(dim_mult)", dBase * (dimMult.max() ?? 0), ConfigLimits.width)], fail: bad)
            // The AvgDown / DupUp shortcuts regroup channels: in·ft·fs² must divide by out (and back).
            let enc = encoderDims, dec = decoderDims, n = dimMult.count
            for i in 0..<n {
                let fs = i != n - 1 ? 2 : 1, ft = i != n - 1 && temperalDownsample[i] ? 2 : 1
                guard (enc[i] * ft * fs * fs) % enc[i + 1] == 0 else {
                    throw bad("encoder stage \(i): \(enc[i]) -> \(enc[i + 1]) channels cannot be averaged by the shortcut (\(enc[i]) x \(ft * fs * fs) is not a multiple of \(enc[i + 1]))")
                }
                let up = Array(temperalDownsample.reversed())
                if i != n - 1 {
                    let ftu = up[i] ? 2 : 1
                    guard (dec[i + 1] * ftu * 4) % dec[i] == 0 else {
                        throw bad("decoder stage \(i): \(dec[i]) -> \(dec[i + 1]) channels cannot be repeated by the shortcut")
                    }
                }
            }
            return
        }
        // Every channel count halves exactly in the upsamplers.
        for m in dimMult where (baseDim * m) % 2 != 0 {
            throw bad("base_dim * dim_mult must be even, found \(baseDim) * \(m)")
        }
    }

    /// Channel widths of the encoder: conv_in's output, then each stage's.
    public var encoderDims: [Int] { [baseDim] + dimMult.map { baseDim * $0 } }
    /// Channel widths of the 2.1 decoder: conv_in's output, then each up block's (`QwenImage21Decoder3d`).
    public var decoderDims: [Int] {
        let b = decoderBaseDim ?? baseDim
        return [b * dimMult.last!] + dimMult.reversed().map { b * $0 }
    }

    /// Spatial factor between pixels and latents (8 for the real model).
    public var spatialCompression: Int { 1 << (dimMult.count - 1) }
    /// Temporal factor between frames after the first and latent frames after the first (4).
    public var temporalCompression: Int { 1 << temperalDownsample.filter { $0 }.count }
}
