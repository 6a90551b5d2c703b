import Foundation
import Kernels
import Quant
import Testing
@testable import QwenImage

/// Parity with the oracle's VAE cases (refs/vae*.safetensors, made by diffusers 0.42.1 in f32).
@Suite(.serialized) struct VAEReferenceTests {
    @Test func configDecodes() throws {
        let c = try VAEFixture.config("vae")
        #expect(c.baseDim == 8 && c.zDim == 16 && c.dimMult == [1, 2, 4, 4] && c.inputChannels == 3)
        #expect(c.temperalDownsample == [false, true, true] && c.spatialCompression == 8 && c.temporalCompression == 4)
        let rgba = try VAEFixture.config("vae_rgba")
        #expect(rgba.inputChannels == 4)
        // Older configs lack input_channels: default 3.
        var json = try JSONSerialization.jsonObject(with: try VAEFixture.checkpoint("vae").configData()) as! [String: Any]
        json.removeValue(forKey: "input_channels")
        let old = try VAEConfig.load(try JSONSerialization.data(withJSONObject: json), file: "config.json")
        #expect(old.inputChannels == 3)
    }

    @Test func encodeStill() throws {
        let refs = try VAEFixture.refs("vae")
        let vae = try VAEFixture.model()
        let x = try VAEFixture.frames(refs, "vae.enc0.image")
        let (mean, logvar, _) = try vae.encode(x)
        let eMean = relL2(mean, try VAEFixture.frames(refs, "vae.enc0.posterior_mean"))
        let eLogvar = relL2(logvar, try VAEFixture.frames(refs, "vae.enc0.posterior_logvar"))
        #expect(eMean < Tolerances.vaeF32, "posterior_mean rel L2 \(eMean)")
        #expect(eLogvar < Tolerances.vaeF32, "posterior_logvar rel L2 \(eLogvar)")
        print("VAE parity vae.enc0: posterior_mean \(eMean), posterior_logvar \(eLogvar)")
        try vae.normalize(mean)
        let eNorm = relL2(mean, try VAEFixture.frames(refs, "vae.enc0.latents_normalized"))
        #expect(eNorm < Tolerances.vaeF32, "latents_normalized rel L2 \(eNorm)")
    }

    @Test func encodeOddSize() throws {
        let refs = try VAEFixture.refs("vae")
        let vae = try VAEFixture.model(parts: .encoder)
        let x = try VAEFixture.frames(refs, "vae.enc_odd.image")
        let (mean, _, _) = try vae.encode(x)
        #expect(mean.height == 5 && mean.width == 7)
        let e = relL2(mean, try VAEFixture.frames(refs, "vae.enc_odd.posterior_mean"))
        #expect(e < Tolerances.vaeF32, "enc_odd posterior_mean rel L2 \(e)")
    }

    @Test func decodeStill() throws {
        let refs = try VAEFixture.refs("vae")
        let vae = try VAEFixture.model(parts: .decoder)
        // The pipeline's de-normalization of the normalized latents gives the decoder input.
        let zn = try VAEFixture.frames(refs, "vae.dec0.latents_normalized")
        try vae.denormalize(zn)
        let z = try VAEFixture.frames(refs, "vae.dec0.latents")
        #expect(relL2(zn, z) < Tolerances.vaeDenormalize)
        let sample = try vae.decode(z).frames
        let e = relL2(sample, try VAEFixture.frames(refs, "vae.dec0.sample"))
        #expect(e < Tolerances.vaeF32, "dec0 sample rel L2 \(e)")
        print("VAE parity vae.dec0: sample \(e)")
    }

    @Test func bf16WeightsMatchToo() throws {
        let refs = try VAEFixture.refs("vae")
        let vae = try VAEFixture.model(scheme: .bf16)
        let (mean, _, _) = try vae.encode(try VAEFixture.frames(refs, "vae.enc0.image"))
        let eEnc = relL2(mean, try VAEFixture.frames(refs, "vae.enc0.posterior_mean"))
        let sample = try vae.decode(try VAEFixture.frames(refs, "vae.dec0.latents")).frames
        let eDec = relL2(sample, try VAEFixture.frames(refs, "vae.dec0.sample"))
        // The fixture weights are bf16 already, so bf16 storage is exact: expect f32-level agreement.
        #expect(eEnc < Tolerances.vaeBF16 && eDec < Tolerances.vaeBF16, "bf16: enc \(eEnc), dec \(eDec)")
        #expect(eEnc < Tolerances.vaeF32 && eDec < Tolerances.vaeF32, "bf16 weights should be exact here: enc \(eEnc), dec \(eDec)")
        print("VAE parity bf16 weights: enc0 mean \(eEnc), dec0 sample \(eDec)")
    }

    /// The in-memory hub-layout source and the converter's pack give the same numbers.
    @Test func hubSourceMatchesPack() throws {
        let refs = try VAEFixture.refs("vae")
        let z = try VAEFixture.frames(refs, "vae.dec0.latents")
        let a = try VAEFixture.model(parts: .decoder).decode(z).frames
        let b = try VAEFixture.hubModel(parts: .decoder).decode(z).frames
        #expect(relL2(a, b) < Tolerances.vaePackVsCheckpoint)
    }

    /// q8 convolution weights: the quality cost is measured (PSNR of decoded images vs f32), not pass/fail,
    /// beyond staying a usable image (PSNR above 20 dB on this random-weight model).
    @Test func q8DecodeQuality() throws {
        let refs = try VAEFixture.refs("vae")
        let z = try VAEFixture.frames(refs, "vae.dec0.latents")
        let f32 = try VAEFixture.model(parts: .decoder).decode(z).frames
        for scheme in [PackScheme.bf16, .q8] {
            let other = try VAEFixture.model(scheme: scheme, parts: .decoder).decode(z).frames
            var mse = 0.0
            for i in 0..<f32.count { let d = Double(other.data[i] - f32.data[i]) / 2; mse += d * d }
            mse /= Double(f32.count)
            let psnr = mse > 0 ? 10 * log10(1 / mse) : .infinity
            print("VAE quality \(scheme.rawValue) vs f32 decode (pixels in [0, 1]): PSNR \(psnr) dB, rel L2 \(relL2(other, f32))")
            #expect(psnr > 20, "\(scheme.rawValue): PSNR \(psnr) dB")
        }
    }

    @Test func pngInputMatchesThePipelinePreprocessing() throws {
        let refs = try VAEFixture.refs("vae")
        let img = try ImageFile.read(path: vaeFixtures.appendingPathComponent("refs/images/vae_enc0.png").path)
        let x = VAEFrames(image: img)
        let ref = try VAEFixture.frames(refs, "vae.enc0.image")
        #expect(x.floats == ref.floats, "uint8/255*2-1 must match the processor bit for bit")
        let rgba = try ImageFile.read(path: vaeFixtures.appendingPathComponent("refs/images/vae_rgba_enc.png").path, keepAlpha: true)
        let xRGBA = VAEFrames(image: rgba)
        let refRGBA = try VAEFixture.frames(try VAEFixture.refs("vae_rgba"), "vae_rgba.enc.image")
        #expect(xRGBA.channels == 4 && xRGBA.floats == refRGBA.floats)
        // Output: clamp(x/2 + 0.5, 0, 1), round(·255) as the pipeline's postprocess; compare with its PNG.
        let sample = try VAEFixture.frames(refs, "vae.dec0.sample")
        let png = try ImageFile.read(path: vaeFixtures.appendingPathComponent("refs/images/vae_dec0.png").path)
        #expect(sample.image8(frame: 0) == png)
    }

    @Test func encodeClips() throws {
        let refs = try VAEFixture.refs("vae_video")
        let vae = try VAEFixture.model(temporal: true, parts: .encoder)
        for name in ["enc5", "enc9"] {
            let x = try VAEFixture.frames(refs, "vae_video.\(name).video")
            let (mean, logvar, _) = try vae.encode(x)
            let eMean = relL2(mean, try VAEFixture.frames(refs, "vae_video.\(name).posterior_mean"))
            let eLogvar = relL2(logvar, try VAEFixture.frames(refs, "vae_video.\(name).posterior_logvar"))
            #expect(eMean < Tolerances.vaeF32, "\(name) posterior_mean rel L2 \(eMean)")
            #expect(eLogvar < Tolerances.vaeF32, "\(name) posterior_logvar rel L2 \(eLogvar)")
            print("VAE parity vae_video.\(name): posterior_mean \(eMean), posterior_logvar \(eLogvar)")
        }
    }

    @Test func decodeClip() throws {
        let refs = try VAEFixture.refs("vae_video")
        let vae = try VAEFixture.model(temporal: true, parts: .decoder)
        let z = try VAEFixture.frames(refs, "vae_video.dec.latents")
        let raw = try vae.decode(z, clamp: false).frames
        #expect(raw.frames == 9 && raw.height == 40 && raw.width == 56)
        let eRaw = relL2(raw, try VAEFixture.frames(refs, "vae_video.dec.sample_unclamped"))
        #expect(eRaw < Tolerances.vaeF32, "clip sample_unclamped rel L2 \(eRaw)")
        let sample = try vae.decode(z).frames
        let e = relL2(sample, try VAEFixture.frames(refs, "vae_video.dec.sample"))
        #expect(e < Tolerances.vaeF32, "clip sample rel L2 \(e)")
        print("VAE parity vae_video.dec: sample_unclamped \(eRaw), sample \(e)")
    }

    @Test func rgbaEncodeAndDecode() throws {
        let refs = try VAEFixture.refs("vae_rgba")
        let vae = try VAEFixture.model("vae_rgba")
        let x = try VAEFixture.frames(refs, "vae_rgba.enc.image")
        #expect(x.channels == 4)
        let (mean, logvar, _) = try vae.encode(x)
        #expect(relL2(mean, try VAEFixture.frames(refs, "vae_rgba.enc.posterior_mean")) < Tolerances.vaeF32)
        #expect(relL2(logvar, try VAEFixture.frames(refs, "vae_rgba.enc.posterior_logvar")) < Tolerances.vaeF32)
        try vae.normalize(mean)
        #expect(relL2(mean, try VAEFixture.frames(refs, "vae_rgba.enc.latents_normalized")) < Tolerances.vaeF32)
        // The Layered pipeline decodes each layer as its own still (layers in the batch dimension).
        for layer in 0..<2 {
            let z = try VAEFixture.frames(refs, "vae_rgba.dec.latents", batch: layer)
            let sample = try vae.decode(z).frames
            let e = relL2(sample, try VAEFixture.frames(refs, "vae_rgba.dec.sample", batch: layer))
            #expect(e < Tolerances.vaeF32, "rgba layer \(layer) rel L2 \(e)")
            print("VAE parity vae_rgba.dec layer \(layer): sample \(e)")
        }
    }
}
