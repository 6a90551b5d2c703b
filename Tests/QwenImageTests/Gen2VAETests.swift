import Foundation
import Kernels
import Quant
import Testing
@testable import QwenImage

/// The Qwen-Image 2.1 VAE (`AutoencoderKLQwenImage21`) against the references of `Tests/Fixtures/gen2`
/// (MANIFEST.md): RGBA encode (posterior mean, logvar, normalized latents) and decode, tiled = untiled.
@Suite("Qwen-Image 2.1 VAE", .serialized) struct Gen2VAETests {

    static func pack(_ scheme: PackScheme) throws -> Pack {
        try Pack(path: try Gen2Packs.path(scheme, components: ["vae"]))
    }

    static func vae(_ scheme: PackScheme = .f32) throws -> AutoencoderKLQwenImage {
        try VAEPack(pack: try pack(scheme), name: "vae").model()
    }

    static func refs() throws -> SafetensorsFile {
        try SafetensorsFile(path: vaeFixtures.appendingPathComponent("gen2/refs/gen2_vae.safetensors").path)
    }

    @Test("the config is the residual 2.1 layout; time_conv is dropped with its reason")
    func config() throws {
        let v = try Self.vae()
        #expect(v.config.isResidual && v.config.inputChannels == 4 && v.config.spatialCompression == 16)
        #expect(v.config.decoderDims == [48, 48, 48, 24, 24, 12] && v.config.encoderDims == [8, 8, 16, 16, 32, 32])
        let dropped = try Self.pack(.f32).component("vae").manifest.dropped
        #expect(!dropped.isEmpty && dropped.allSatisfy { $0.contains("time_conv") })
    }

    @Test("encode: posterior mean and logvar, and the pipeline's normalized latents")
    func encode() throws {
        let r = try Self.refs()
        let v = try Self.vae()
        let x = try VAEFixture.frames(r, "vae.enc.image")
        let (mean, logvar, _) = try v.encode(x)
        let em = relL2(mean, try VAEFixture.frames(r, "vae.enc.posterior_mean"))
        let el = relL2(logvar, try VAEFixture.frames(r, "vae.enc.posterior_logvar"))
        try v.normalize(mean)
        let en = relL2(mean, try VAEFixture.frames(r, "vae.enc.latents_normalized"))
        print("gen2 VAE f32 encode: mean \(em), logvar \(el), normalized \(en)")
        #expect(em <= Tolerances.vaeF32 && el <= Tolerances.vaeF32 && en <= Tolerances.vaeF32)
    }

    @Test("decode: the clamped RGBA sample")
    func decode() throws {
        let r = try Self.refs()
        let (out, _) = try Self.vae().decode(try VAEFixture.frames(r, "vae.dec.latents"))
        let e = relL2(out, try VAEFixture.frames(r, "vae.dec.sample"))
        print("gen2 VAE f32 decode: \(e)")
        #expect(out.channels == 4 && out.height == 80 && out.width == 112)
        #expect(e <= Tolerances.vaeF32)
    }

    @Test("tiled = untiled, encode and decode", arguments: [16, 32, 48])
    func tiled(_ tile: Int) throws {
        let r = try Self.refs()
        let v = try Self.vae()
        let x = try VAEFixture.frames(r, "vae.enc.image")
        let whole = try v.encode(x).mean
        let tiles = try v.encode(x, tiling: .tile(tile))
        #expect(tiles.report.segments.contains { $0.tiles > 1 } || tile >= 64)
        #expect(relL2(tiles.mean, whole) <= Tolerances.vaeTiledVsUntiled, "encode, tile \(tile)")
        let z = try VAEFixture.frames(r, "vae.dec.latents")
        let dWhole = try v.decode(z).frames
        let dTiles = try v.decode(z, tiling: .tile(tile))
        #expect(dTiles.report.segments.contains { $0.tiles > 1 })
        #expect(relL2(dTiles.frames, dWhole) <= Tolerances.vaeTiledVsUntiled, "decode, tile \(tile)")
    }

    @Test("sizes that are not multiples of 16, and clips, are refused saying why")
    func badInput() throws {
        let v = try Self.vae()
        let e = #expect(throws: QwenImageError.self) { _ = try v.encode(VAEFrames(frames: 1, height: 72, width: 100, channels: 4)) }
        #expect("\(e!)".contains("multiples of 16"))
        #expect(throws: QwenImageError.self) { _ = try VAEPack(pack: try Self.pack(.f32), name: "vae").model(temporal: true) }
    }

    @Test("q8s and bf16 packs: decode error measured")
    func quantized() throws {
        let r = try Self.refs()
        let want = try VAEFixture.frames(r, "vae.dec.sample")
        for (scheme, bound) in [(PackScheme.bf16, Tolerances.vaeBF16), (.q8s, Tolerances.vaeBF16)] {
            let e = relL2(try Self.vae(scheme).decode(try VAEFixture.frames(r, "vae.dec.latents")).frames, want)
            print("gen2 VAE \(scheme.rawValue) decode: rel L2 \(e)")
            #expect(e <= bound, "\(scheme.rawValue): \(e)")
        }
    }
}
