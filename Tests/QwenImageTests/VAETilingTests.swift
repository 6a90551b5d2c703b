import Foundation
import Kernels
import Quant
import Testing
@testable import QwenImage

/// Exact tiling: our tiled result equals our untiled result at every tile size, including sizes that do
/// not divide the image and tiles smaller than the receptive field.
@Suite(.serialized) struct VAETilingTests {
    @Test func regionMathMatchesLayerSizes() {
        // Downsampler: output i reads 2i ... 2i+2 (the last may be the zero pad).
        #expect(Span(lo: 0, hi: 5).downInput(11) == Span(lo: 0, hi: 11))
        #expect(Span(lo: 2, hi: 4).downInput(11) == Span(lo: 4, hi: 9))
        #expect(Span(lo: 0, hi: 22).downInput(44) == Span(lo: 0, hi: 44))
        // Upsampler: output rows [3, 7) on 2n need ×2 rows [2, 8) -> low rows [1, 4).
        #expect(Span(lo: 3, hi: 7).upInput(10) == Span(lo: 1, hi: 4))
        #expect(Span(lo: 0, hi: 20).upInput(10) == Span(lo: 0, hi: 10))
        #expect(Span(lo: 0, hi: 4).conv3Input(4) == Span(lo: 0, hi: 4))
        #expect(Span(lo: 1, hi: 3).conv3Input(4) == Span(lo: 0, hi: 4))
    }

    @Test func tiledDecodeEqualsUntiled() throws {
        let refs = try VAEFixture.refs("vae")
        let vae = try VAEFixture.model(parts: .decoder)
        let z = try VAEFixture.frames(refs, "vae.tiled.dec.latents")   // 11×13 latents -> 88×104
        let whole = try vae.decode(z, clamp: false).frames
        // Our untiled decode matches the oracle's untiled one.
        let clamped = try vae.decode(z).frames
        #expect(relL2(clamped, try VAEFixture.frames(refs, "vae.tiled.dec.sample_untiled")) < Tolerances.vaeF32)
        for tile in [8, 13, 40, 57] {
            let (tiled, rep) = try vae.decode(z, tiling: .tile(tile), clamp: false)
            let e = relL2(tiled, whole)
            #expect(rep.segments.last!.tiles > 1, "tile \(tile) should split 88×104")
            #expect(e < Tolerances.vaeTiledVsUntiled, "tile \(tile): tiled vs untiled rel L2 \(e)")
            #expect(rep.peakLiveBuffers <= VAESegment.slots(temporal: false), "tile \(tile): \(rep.peakLiveBuffers) live buffers")
        }
    }

    @Test func tiledEncodeEqualsUntiled() throws {
        let refs = try VAEFixture.refs("vae")
        let vae = try VAEFixture.model(parts: .encoder)
        for name in ["vae.tiled.enc.image", "vae.enc_odd.image"] {
            let x = try VAEFixture.frames(refs, name)
            let whole = try vae.encode(x).mean
            for tile in [8, 24, 40] {
                let (tiled, _, rep) = try vae.encode(x, tiling: .tile(tile))
                let e = relL2(tiled, whole)
                #expect(rep.segments.first!.tiles > 1, "\(name) tile \(tile)")
                #expect(e < Tolerances.vaeTiledVsUntiled, "\(name) tile \(tile): rel L2 \(e)")
            }
        }
    }

    @Test func tiledClipsEqualUntiled() throws {
        let refs = try VAEFixture.refs("vae_video")
        let vae = try VAEFixture.model(temporal: true)
        let z = try VAEFixture.frames(refs, "vae_video.dec.latents")
        let whole = try vae.decode(z, clamp: false).frames
        let x = try VAEFixture.frames(refs, "vae_video.enc5.video")
        let wholeEnc = try vae.encode(x).mean
        for tile in [16, 24, 33] {
            let (tiled, rep) = try vae.decode(z, tiling: .tile(tile), clamp: false)
            #expect(relL2(tiled, whole) < Tolerances.vaeTiledVsUntiled, "clip decode tile \(tile)")
            #expect(rep.peakLiveBuffers <= VAESegment.slots(temporal: true))
            let tiledEnc = try vae.encode(x, tiling: .tile(tile)).mean
            #expect(relL2(tiledEnc, wholeEnc) < Tolerances.vaeTiledVsUntiled, "clip encode tile \(tile)")
        }
    }

    @Test func maxRAMChoosesTilesThatFit() throws {
        let refs = try VAEFixture.refs("vae")
        let vae = try VAEFixture.model(parts: .decoder)
        let z = try VAEFixture.frames(refs, "vae.tiled.dec.latents")
        let whole = try vae.decode(z, clamp: false).frames
        let rep = try vae.decode(z, tiling: .maxRAM(1 << 30), clamp: false).report
        #expect(rep.segments.allSatisfy { $0.tiles == 1 }, "1 GiB fits the whole image")
        let wholeBytes = rep.estimatedPeakBytes
        // A budget between the fixed part and the whole-image plan forces tiles.
        let fixed = AutoencoderKLQwenImage.baselineBytes + vae.weightBytes + 4 * (88 * 104 * 3 * 2 + 11 * 13 * 48)  // phase B
        let budget = fixed + (wholeBytes - fixed) / 3
        let (tiled, tiledRep) = try vae.decode(z, tiling: .maxRAM(budget), clamp: false)
        #expect(tiledRep.segments.last!.tiles > 1)
        #expect(tiledRep.estimatedPeakBytes <= budget)
        #expect(relL2(tiled, whole) < Tolerances.vaeTiledVsUntiled)
        // Too small for any tile: a clear budget error.
        #expect(throws: QwenImageError.self) { try vae.decode(z, tiling: .maxRAM(fixed / 2)) }
        do {
            _ = try vae.decode(z, tiling: .maxRAM(fixed / 2))
        } catch let e as QwenImageError {
            guard case .budget(let m) = e else { Issue.record("expected a budget error, got \(e)"); return }
            #expect(m.contains("--max-ram") && m.contains("too small"))
        }
    }
}
