import Foundation
import Quant
import Testing
@testable import QwenImage

// The vision tower against the oracle's edit cases, from the oracle's own pixel_values.

@Test(arguments: VisionFixtures.editCases)
func visionWindowsMatchUpstream(_ name: String) throws {
    let f = try VisionFixtures.file("\(name).safetensors")
    let cfg = try VisionConfig.fromTextEncoderConfig(
        Data(contentsOf: URL(fileURLWithPath: VisionFixtures.modelPath + "/text_encoder/config.json")), file: "config.json")
    let w = try VisionWindows(grids: try VisionFixtures.grids(f, "\(name).image_grid_thw"),
                              spatialMergeSize: cfg.spatialMergeSize, windowSize: cfg.windowSize, patchSize: cfg.patchSize)
    #expect(w.windowIndex == (try f.int64s("\(name).vision.window_index")).map(Int.init))
    #expect(w.cuWindowSeqlens == (try f.int64s("\(name).vision.cu_window_seqlens")).map(Int.init))
    #expect(w.cuSeqlens == (try f.int64s("\(name).vision.cu_seqlens")).map(Int.init))
    let pos = try f.int64s("\(name).vision.rot_pos_ids")
    #expect(w.posH == stride(from: 0, to: pos.count, by: 2).map { pos[$0] })
    #expect(w.posW == stride(from: 1, to: pos.count, by: 2).map { pos[$0] })
}

/// The real model's window geometry (window 112 px = 4×4 units) on sizes that divide and do not divide
/// into windows, checked against the rule written out independently: every unit appears exactly once,
/// windows are 4×4 units clipped at the image edge, in row-major window order.
@Test func visionWindowsRealGeometry() throws {
    for (h, w) in [(72, 72), (36, 28), (30, 44), (8, 8), (2, 2)] {
        let win = try VisionWindows(grids: [(1, h, w), (1, 8, 10)], spatialMergeSize: 2, windowSize: 112, patchSize: 14)
        let lh = h / 2, lw = w / 2
        #expect(Set(win.windowIndex).count == win.windowIndex.count)
        #expect(win.windowIndex.count == lh * lw + 20)
        var expected: [Int] = []
        for wy in stride(from: 0, to: lh, by: 4) {
            for wx in stride(from: 0, to: lw, by: 4) {
                for r in wy..<min(wy + 4, lh) { for c in wx..<min(wx + 4, lw) { expected.append(r * lw + c) } }
            }
        }
        #expect(Array(win.windowIndex.prefix(lh * lw)) == expected, "\(h)x\(w)")
        #expect(win.cuSeqlens == [0, h * w, h * w + 80])
    }
}

/// Runs the tower on a case's pixel_values from a pack, returning the output and the traced intermediates.
func runVision(_ name: String, scheme: PackScheme) throws -> (embeds: [Float], trace: [String: [Float]], file: SafetensorsFile) {
    let f = try VisionFixtures.file("\(name).safetensors")
    let tower = try VisionTower(pack: try TinyPacks.pack(scheme))
    var trace: [String: [Float]] = [:]
    let out = try tower.forward(pixelValues: try f.floats("\(name).pixel_values"),
                                grids: try VisionFixtures.grids(f, "\(name).image_grid_thw"),
                                trace: { trace[$0] = $1 })
    return (out, trace, f)
}

@Test(arguments: VisionFixtures.editCases, [PackScheme.f32, .bf16])
func visionTowerMatchesReference(_ name: String, _ scheme: PackScheme) throws {
    let (out, trace, f) = try runVision(name, scheme: scheme)
    var checked = ["image_embeds"]
    let e = Metrics.relL2(out, try f.floats("\(name).image_embeds"))
    #expect(e <= Tolerances.visionRelL2, "\(name) \(scheme) image_embeds rel L2 \(e)")
    for key in ["patch_embed", "block0", "block1", "block2", "block3", "last_hidden_state"] {
        let ref = "\(name).vision.\(key)"
        guard f.tensors[ref] != nil, let got = trace[key] else { continue }
        let d = Metrics.relL2(got, try f.floats(ref))
        #expect(d <= Tolerances.visionRelL2, "\(name) \(scheme) \(key) rel L2 \(d)")
        checked.append(key)
    }
    print("[vision] \(name) \(scheme): image_embeds rel L2 \(String(format: "%.2e", e)); checked \(checked.joined(separator: ", "))")
    #expect(checked.count >= 3)
}

@Test(arguments: [PackScheme.q8, .q4])
func visionTowerQuantizedError(_ scheme: PackScheme) throws {
    for name in VisionFixtures.editCases {
        let (out, _, f) = try runVision(name, scheme: scheme)
        let e = Metrics.relL2(out, try f.floats("\(name).image_embeds"))
        print("[vision] \(name) \(scheme) (group 64): image_embeds rel L2 \(String(format: "%.3e", e)) (measured, not judged)")
        #expect(e < Tolerances.visionQuantizedSanityRelL2)
    }
}

@Test func visionTowerImagesAreIndependent() throws {
    // editplus2 holds two images of different sizes: each image's rows must equal the tower run on that
    // image alone (attention never crosses images), whatever else is in the batch.
    let f = try VisionFixtures.file("editplus2.safetensors")
    let grids = try VisionFixtures.grids(f, "editplus2.image_grid_thw")
    let pv = try f.floats("editplus2.pixel_values")
    let tower = try VisionTower(pack: try TinyPacks.pack(.f32))
    let both = try tower.forward(pixelValues: pv, grids: grids)
    let n0 = grids[0].h * grids[0].w, out = tower.config.outHiddenSize
    let first = try tower.forward(pixelValues: Array(pv[0..<(n0 * 1176)]), grids: [grids[0]])
    let second = try tower.forward(pixelValues: Array(pv[(n0 * 1176)...]), grids: [grids[1]])
    #expect(Metrics.maxAbs(Array(both[0..<(n0 / 4 * out)]), first) < Tolerances.visionBatchVsSingleMaxAbs)
    #expect(Metrics.maxAbs(Array(both[(n0 / 4 * out)...]), second) < Tolerances.visionBatchVsSingleMaxAbs)
}

@Test func visionTowerRefusesBadInput() throws {
    let tower = try VisionTower(pack: try TinyPacks.pack(.f32))
    #expect(throws: QwenImageError.self) { _ = try tower.forward(pixelValues: [Float](repeating: 0, count: 10), grids: [(1, 2, 2)]) }
    #expect(throws: QwenImageError.self) {
        _ = try tower.forward(pixelValues: [Float](repeating: 0, count: 3 * 1176), grids: [(1, 1, 3)])
    }
    // A pack without a text encoder (hence without a vision tower).
    let vaeOnly = try Pack(path: try TinyPacks.path(.f32, components: ["vae"]))
    do {
        _ = try VisionTower(pack: vaeOnly)
        Issue.record("a pack without a vision tower must be refused")
    } catch let e as QwenImageError {
        #expect(e.description.contains("text_encoder"))
    }
    let noVision = Data("{\"hidden_size\": 64}".utf8)
    #expect(throws: QwenImageError.self) { _ = try VisionConfig.fromTextEncoderConfig(noVision, file: "config.json") }
}
