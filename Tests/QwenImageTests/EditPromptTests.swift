import Foundation
import Quant
import Testing
@testable import QwenImage

// Edit / Edit-Plus prompts against the oracle (refs/edit*.safetensors, refs/cases.json). The target is the
// mrope behaviour (`<case>.prompt_embeds`, `<case>.position_ids`), not `<case>.seqpos.*` (docs/EDIT.md).

enum EditCases {
    /// (prompt, mode, image PNG names) of an oracle case, from cases.json.
    static func info(_ name: String) throws -> (prompt: String, mode: EditMode, images: [String]) {
        let data = try Data(contentsOf: URL(fileURLWithPath: VisionFixtures.ref("cases.json")))
        let root = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        let c = ((root["cases"] as! [String: Any])["edit"] as! [String: Any])[name] as! [String: Any]
        let mode: EditMode = (c["pipeline"] as! String) == "QwenImageEditPipeline" ? .edit : .editPlus
        let images = (c["images"] as! [[String: Any]]).map { $0["png"] as! String }
        return (c["prompt"] as! String, mode, images)
    }

    static func positions(_ f: SafetensorsFile, _ name: String) throws -> (t: [Int64], h: [Int64], w: [Int64]) {
        let p = try f.int64s("\(name).position_ids")   // [3, 1, L]
        let l = p.count / 3
        return (Array(p[0 ..< l]), Array(p[l ..< 2 * l]), Array(p[2 * l ..< 3 * l]))
    }

    static func encoder(_ scheme: PackScheme) throws -> EditPromptEncoder {
        let path = try TinyPacks.path(scheme)
        return try EditPromptEncoder(pack: try Pack(path: path), packPath: path)
    }
}

@Test(arguments: VisionFixtures.editCases)
func editIdsPositionsAndSplice(_ name: String) throws {
    let f = try VisionFixtures.file("\(name).safetensors")
    let (prompt, mode, _) = try EditCases.info(name)
    let grids = try VisionFixtures.grids(f, "\(name).image_grid_thw")
    let enc = try EditCases.encoder(.f32)
    let seq = try enc.sequence(prompt: prompt, mode: mode, grids: grids, imageEmbeds: try f.floats("\(name).image_embeds"))
    #expect(seq.ids == (try f.int64s("\(name).input_ids")).map(Int.init), "\(name): input_ids")
    let ref = try EditCases.positions(f, name)
    #expect(seq.positions.t == ref.t && seq.positions.h == ref.h && seq.positions.w == ref.w, "\(name): position_ids")
    // Spliced embeddings: the same embedding rows and the oracle's image rows, so equal up to nothing.
    let d = Metrics.maxAbs(seq.inputsEmbeds, try f.floats("\(name).inputs_embeds"))
    #expect(d == 0, "\(name): inputs_embeds max abs \(d)")
}

/// The position rule on synthetic grids (two images of different shapes, tall and wide), written out
/// independently of the implementation's loop.
@Test func editPositionsRule() throws {
    let pad = 7
    let grids = [(t: 1, h: 6, w: 4), (t: 1, h: 2, w: 8)]   // merged 3x2 and 1x4
    let ids = [1, 2, pad, 3, pad, 4, 5]
    let x = try EditPrompt.expand(ids: ids, imagePad: pad, counts: EditPrompt.tokenCounts(grids: grids, mergeSize: 2))
    #expect(x.count == 5 + 6 + 4)
    let p = try EditPrompt.positions(expandedIDs: x, imagePad: pad, grids: grids, mergeSize: 2)
    // text 0, 1; image 1 at s = 2: rows 0..2, cols 0..1; text resumes at 2 + max(3, 2) = 5; image 2 at s = 6.
    #expect(p.t == [0, 1, 2, 2, 2, 2, 2, 2, 5, 6, 6, 6, 6, 10, 11])
    #expect(p.h == [0, 1, 2, 2, 3, 3, 4, 4, 5, 6, 6, 6, 6, 10, 11])
    #expect(p.w == [0, 1, 2, 3, 2, 3, 2, 3, 5, 6, 7, 8, 9, 10, 11])
    #expect(throws: QwenImageError.self) { _ = try EditPrompt.expand(ids: [pad, pad], imagePad: pad, counts: [4]) }
}

/// The whole path from the oracle's pixel_values: vision tower, splice, mrope, language model, drop 64.
@Test(arguments: VisionFixtures.editCases, [PackScheme.f32, .bf16, .q8, .q4])
func editPromptEmbeddings(_ name: String, _ scheme: PackScheme) throws {
    let f = try VisionFixtures.file("\(name).safetensors")
    let (prompt, mode, _) = try EditCases.info(name)
    let grids = try VisionFixtures.grids(f, "\(name).image_grid_thw")
    let enc = try EditCases.encoder(scheme)
    let embeds = try enc.tower.forward(pixelValues: try f.floats("\(name).pixel_values"), grids: grids)
    let (out, _) = try enc.encode([[prompt]], mode: mode, grids: grids, imageEmbeds: embeds)
    let ref = try f.floats("\(name).prompt_embeds")
    #expect(out[0].embeds.count == ref.count)
    #expect(out[0].mask == (try f.int64s("\(name).prompt_embeds_mask")))
    let e = Metrics.relL2(out[0].embeds, ref)
    let seq = Metrics.relL2(out[0].embeds, try f.floats("\(name).seqpos.prompt_embeds"))
    print("[edit] \(name) \(scheme): prompt_embeds rel L2 \(String(format: "%.3e", e)) "
          + "(vs the sequential-position seqpos output: \(String(format: "%.3f", seq)))")
    switch scheme {
    case .f32, .bf16, .f16: #expect(e <= Tolerances.editPromptRelL2, "\(name) \(scheme)")
    case .q8, .q4, .q4c, .q8s, .q5s, .q6s: #expect(e < Tolerances.visionQuantizedSanityRelL2, "\(name) \(scheme) (reported, sanity bound only)")
    }
    // We target the 3-D positions: the installed pipeline's sequential-position output is far away.
    #expect(seq > 0.1)
}

/// From the PNG files through our decoder, preprocessing, tower and prompt (preresize none, as the oracle).
@Test(arguments: VisionFixtures.editCases)
func editPromptFromImageFiles(_ name: String) throws {
    let f = try VisionFixtures.file("\(name).safetensors")
    let (prompt, mode, images) = try EditCases.info(name)
    let enc = try EditCases.encoder(.f32)
    let path = try TinyPacks.path(.f32)
    let (embeds, input) = try ReferenceImages.embed(paths: images.map { VisionFixtures.ref($0) }, pack: try Pack(path: path),
                                                    mode: mode, preresize: false, tower: enc.tower)
    #expect(Metrics.maxAbs(input.pixelValues, try f.floats("\(name).pixel_values")) <= Tolerances.pixelValuesMaxAbs)
    let (out, _) = try enc.encode([[prompt], [" "]], mode: mode, grids: input.grids, imageEmbeds: embeds)
    let e = Metrics.relL2(out[0].embeds, try f.floats("\(name).prompt_embeds"))
    #expect(e <= Tolerances.editPromptRelL2, "\(name): prompt_embeds rel L2 \(e)")
    #expect(out[1].batch == 1 && out[1].length > 0)
}

@Test func editModeImageCounts() throws {
    #expect(throws: QwenImageError.self) { try ReferenceImages.checkCount(2, mode: .edit) }
    #expect(throws: QwenImageError.self) { try ReferenceImages.checkCount(0, mode: .edit) }
    #expect(throws: QwenImageError.self) { try ReferenceImages.checkCount(0, mode: .editPlus) }
    try ReferenceImages.checkCount(3, mode: .editPlus)
    #expect(ReferenceImages.defaultMode(imageCount: 1) == .edit)
    #expect(ReferenceImages.defaultMode(imageCount: 2) == .editPlus)
    // A prompt that spells <|image_pad|> itself adds an image token the images cannot fill.
    let enc = try EditCases.encoder(.f32)
    let f = try VisionFixtures.file("edit1.safetensors")
    #expect(throws: QwenImageError.self) {
        _ = try enc.sequence(prompt: "a <|image_pad|> b", mode: .edit, grids: try VisionFixtures.grids(f, "edit1.image_grid_thw"),
                             imageEmbeds: try f.floats("edit1.image_embeds"))
    }
}
