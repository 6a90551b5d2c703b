import Foundation
import Kernels
import Quant
import Testing
@testable import QwenImage

/// Bad input to the VAE library: clear typed errors, never a crash.
@Suite(.serialized) struct VAEBadInputTests {
    @Test func wrongLatentChannels() throws {
        let vae = try VAEFixture.model(parts: .decoder)
        let z = VAEFrames(frames: 1, height: 4, width: 4, channels: 15)
        #expect(throws: QwenImageError.self) { try vae.decode(z) }
        #expect(throws: QwenImageError.self) { try vae.normalize(z) }
        #expect(throws: QwenImageError.self) { try vae.denormalize(z) }
    }

    @Test func nonFiniteLatentsAndPixels() throws {
        let vae = try VAEFixture.model()
        let z = VAEFrames(frames: 1, height: 4, width: 4, channels: 16)
        z.data[37] = .nan
        do { _ = try vae.decode(z); Issue.record("NaN latents accepted") } catch let e as QwenImageError {
            #expect(e.description.contains("non-finite"))
        }
        z.data[37] = .infinity
        #expect(throws: QwenImageError.self) { try vae.decode(z) }
        let x = VAEFrames(frames: 1, height: 16, width: 16, channels: 3)
        x.data[5] = -.infinity
        #expect(throws: QwenImageError.self) { try vae.encode(x) }
    }

    @Test func tooSmallOrEmptyImages() throws {
        let vae = try VAEFixture.model(parts: .encoder)
        #expect(vae.minimumSide() == 8)   // 8 -> 4 -> 2 -> 1; 7 -> 3 -> 1 -> (too small)
        for (h, w) in [(0, 0), (0, 16), (7, 16), (16, 5)] {
            let x = VAEFrames(frames: 1, height: h, width: w, channels: 3)
            #expect(throws: QwenImageError.self, "\(h)×\(w)") { try vae.encode(x) }
        }
        // The smallest accepted side works.
        let x = VAEFrames(frames: 1, height: 8, width: 8, channels: 3)
        let (mean, _, _) = try vae.encode(x)
        #expect(mean.height == 1 && mean.width == 1)
    }

    @Test func wrongChannelsAndFrameCounts() throws {
        let vae = try VAEFixture.model(parts: .encoder)
        #expect(throws: QwenImageError.self) { try vae.encode(VAEFrames(frames: 1, height: 16, width: 16, channels: 4)) }
        // Still-image weights refuse clips; clips must be 1 + 4k frames.
        #expect(throws: QwenImageError.self) { try vae.encode(VAEFrames(frames: 5, height: 16, width: 16, channels: 3)) }
        let clipVAE = try VAEFixture.model(temporal: true, parts: .encoder)
        #expect(throws: QwenImageError.self) { try clipVAE.encode(VAEFrames(frames: 6, height: 16, width: 16, channels: 3)) }
    }

    @Test func badConfigs() throws {
        let data = try VAEFixture.checkpoint("vae").configData()
        var json = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        json["latents_mean"] = [0.0, 1.0]
        #expect(throws: QwenImageError.self) { try VAEConfig.load(try JSONSerialization.data(withJSONObject: json), file: "c.json") }
        #expect(throws: QwenImageError.self) { try VAEConfig.load(Data("{".utf8), file: "c.json") }
    }

    @Test func missingOrMisshapenWeights() throws {
        let cfg = try VAEFixture.config("vae")
        let ck = try VAEFixture.checkpoint("vae")
        let missing = RecordingTensorSource { name in
            name == "decoder.conv_in.weight" ? nil : (try ck.info(name).shape, try ck.floats(name))
        }
        #expect(throws: QuantError.tensor(name: "decoder.conv_in.weight", message: "missing from the checkpoint (expected shape [32, 16, 3, 3, 3])")) {
            try AutoencoderKLQwenImage(config: cfg, source: missing, parts: .decoder)
        }
        var wrong = cfg
        wrong.baseDim = 16
        #expect(throws: QuantError.self) {
            try AutoencoderKLQwenImage(config: wrong, source: RecordingTensorSource(checkpoint: ck), parts: .decoder)
        }
    }
}

/// The VAE built for clips asks for exactly the fixture checkpoint's tensors, with their shapes.
@Test func vaeRequestsMatchTheFixture() throws {
    for component in ["vae", "vae_rgba"] {
        let ck = try VAEFixture.checkpoint(component)
        let src = RecordingTensorSource()
        _ = try AutoencoderKLQwenImage(config: try VAEFixture.config(component), source: src, temporal: true)
        let requested = Dictionary(src.requests.map { ($0.name, $0.sourceShape) }, uniquingKeysWith: { a, _ in a })
        #expect(Set(requested.keys) == Set(ck.tensorNames), "\(component)")
        for (name, shape) in requested where ck.contains(name) {
            #expect(try ck.info(name).shape == shape, "\(component) \(name)")
        }
    }
}
