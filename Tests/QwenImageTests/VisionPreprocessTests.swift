import Foundation
import Quant
import Testing
@testable import QwenImage

// Preprocessing against the oracle (`refs/edit*.safetensors`) and Pillow 13 (`refs/resize.safetensors`,
// made by `Fixtures/scripts/make_resize_refs.py` from the upstream functions and PIL).

@Test func geometryMatchesUpstream() throws {
    let f = try VisionFixtures.file("resize.safetensors")
    let sizes = try f.int64s("geometry.sizes_hw").map(Int.init)
    let smart = try f.int64s("geometry.smart_resize_hw").map(Int.init)
    let edit = try f.int64s("geometry.edit_wh").map(Int.init)
    let plus = try f.int64s("geometry.editplus_cond_wh").map(Int.init)
    for i in 0..<(sizes.count / 2) {
        let h = sizes[2 * i], w = sizes[2 * i + 1]
        let e = VisionGeometry.preresizeTarget(width: w, height: h, mode: .edit)
        #expect([e.width, e.height] as [Int] == [edit[2 * i], edit[2 * i + 1]], "calculate_dimensions(1024², \(w)/\(h))")
        let p = VisionGeometry.preresizeTarget(width: w, height: h, mode: .editPlus)
        #expect([p.width, p.height] as [Int] == [plus[2 * i], plus[2 * i + 1]], "calculate_dimensions(384², \(w)/\(h))")
        if smart[2 * i] < 0 {
            #expect(throws: QwenImageError.self) { try VisionGeometry.smartResize(height: h, width: w, minPixels: 3136, maxPixels: 12_845_056) }
        } else {
            let s = try VisionGeometry.smartResize(height: h, width: w, minPixels: 3136, maxPixels: 12_845_056)
            #expect([s.height, s.width] as [Int] == [smart[2 * i], smart[2 * i + 1]], "smart_resize(\(h), \(w))")
        }
    }
}

@Test func pythonRoundIsHalfToEven() {
    #expect(VisionGeometry.pythonRound(2.5) == 2)
    #expect(VisionGeometry.pythonRound(3.5) == 4)
    #expect(VisionGeometry.pythonRound(4.5) == 4)
    #expect(VisionGeometry.pythonRound(-0.5) == 0)
    #expect(VisionGeometry.pythonRound(4.500001) == 5)
}

@Test func resamplersMatchPillow() throws {
    let f = try VisionFixtures.file("resize.safetensors")
    var checked = 0
    for name in f.tensorNames where name.hasPrefix("resize.bicubic.") || name.hasPrefix("resize.lanczos.") {
        let parts = name.split(separator: ".")          // resize.<filter>.<src>.<h>x<w>
        let filter = PILResample.Filter(rawValue: String(parts[1]))!
        let src = try VisionFixtures.rgb(f, "resize.\(parts[2])")
        let want = try VisionFixtures.rgb(f, name)
        let got = try src.resized(width: want.width, height: want.height, filter: filter)
        let diff = Metrics.maxAbs(got.pixels, want.pixels)
        #expect(diff <= Tolerances.resizeGreyLevels, "\(name): max difference \(diff) grey levels from Pillow")
        checked += 1
    }
    #expect(checked == 12)
}

@Test func rgbaMatchesPillow() throws {
    let f = try VisionFixtures.file("resize.safetensors")
    let src = try VisionFixtures.image(f, "rgba.src")
    let white = try VisionFixtures.rgb(f, "rgba.white")
    #expect(try src.pipelineRGB(resizeTo: nil) == white, "composite onto white (transformers convert_to_rgb)")
    for (h, w) in [(96, 128), (32, 40)] {
        let want = try VisionFixtures.image(f, "rgba.lanczos.\(h)x\(w)")
        let got = try PILResample.resizeRGBA(src.pixels, width: src.width, height: src.height, toWidth: w, toHeight: h,
                                         filter: .lanczos)
        #expect(Metrics.maxAbs(got, want.pixels) <= Tolerances.resizeGreyLevels, "RGBA Lanczos \(h)x\(w)")
    }
}

/// Everything after the processor's resize, from the recovered resized image: exact.
@Test(arguments: VisionFixtures.editCases)
func pixelValuesFromResizedImage(_ name: String) throws {
    let f = try VisionFixtures.file("\(name).safetensors")
    let grids = try VisionFixtures.grids(f, "\(name).image_grid_thw")
    let ref = try f.floats("\(name).pixel_values")
    let proc = VisionPreprocessor()
    var pv: [Float] = []
    for k in 0..<grids.count {
        let img = try VisionFixtures.rgb(f, "\(name).image\(k).processor_resized_uint8")
        let (rows, grid) = try proc.patchify(img)
        #expect([grid.t, grid.h, grid.w] as [Int] == [grids[k].t, grids[k].h, grids[k].w])
        pv += rows
    }
    let d = Metrics.maxAbs(pv, ref)
    #expect(d <= Tolerances.pixelValuesMaxAbs, "\(name): pixel_values max abs \(d)")
}

/// The whole processor from the input image (smart_resize + our bicubic): reports the grey-level
/// difference of the resize from the oracle's resized image, then checks pixel_values.
@Test(arguments: VisionFixtures.editCases)
func pixelValuesFromInputImage(_ name: String) throws {
    let f = try VisionFixtures.file("\(name).safetensors")
    let grids = try VisionFixtures.grids(f, "\(name).image_grid_thw")
    let proc = try VisionPreprocessor(
        preprocessorConfig: Data(contentsOf: URL(fileURLWithPath: VisionFixtures.modelPath + "/processor/preprocessor_config.json")),
        file: "preprocessor_config.json")
    var images: [VisionSourceImage] = []
    for k in 0..<grids.count {
        let input = try VisionFixtures.image(f, "\(name).image\(k).uint8")
        let want = try VisionFixtures.rgb(f, "\(name).image\(k).processor_resized_uint8")
        let got = try proc.resize(input.pipelineRGB(resizeTo: nil), path: "image\(k)")
        #expect(got.width == want.width && got.height == want.height)
        let diff = Metrics.maxAbs(got.pixels, want.pixels)
        print("[vision] \(name).image\(k): \(input.width)x\(input.height) -> \(got.width)x\(got.height), "
              + "bicubic max difference vs the oracle: \(diff) grey levels")
        #expect(diff <= Tolerances.resizeGreyLevels)
        images.append(input)
    }
    let input = try VisionInput.prepare(images: images, paths: images.indices.map { "image\($0)" },
                                        mode: .editPlus, preresize: false, processor: proc)
    #expect(input.grids.map { [$0.t, $0.h, $0.w] } as [[Int]] == grids.map { [$0.t, $0.h, $0.w] })
    let d = Metrics.maxAbs(input.pixelValues, try f.floats("\(name).pixel_values"))
    #expect(d <= Tolerances.pixelValuesMaxAbs, "\(name): pixel_values max abs \(d)")
}

@Test func preprocessRefusesBadSizes() throws {
    let proc = VisionPreprocessor()
    let tiny = try VisionSourceImage(width: 27, height: 40, channels: 3, pixels: [UInt8](repeating: 9, count: 27 * 40 * 3))
    #expect(throws: QwenImageError.self) {
        _ = try VisionInput.prepare(images: [tiny], paths: ["tiny.png"], mode: .edit, preresize: false, processor: proc)
    }
    // The pipelines' first resize brings the small image to a 384² area (Edit-Plus), which the processor accepts.
    let ok = try VisionInput.prepare(images: [tiny], paths: ["tiny.png"], mode: .editPlus, preresize: true, processor: proc)
    #expect(ok.grids.count == 1 && ok.resized[0].width % 28 == 0)
    let thin = try VisionSourceImage(width: 29 * 201, height: 29, channels: 3,
                                 pixels: [UInt8](repeating: 9, count: 29 * 201 * 29 * 3))
    do {
        _ = try VisionInput.prepare(images: [thin], paths: ["thin.png"], mode: .edit, preresize: false, processor: proc)
        Issue.record("an aspect ratio above 200 must be refused")
    } catch let e as QwenImageError {
        #expect(e.description.contains("thin.png") && e.description.contains("aspect"))
    }
}

/// Public image APIs refuse inconsistent input with an error instead of trapping.
@Test func imageAPIsThrowOnBadInput() throws {
    #expect(throws: QwenImageError.self) { try RGBImage(width: 2, height: 2, pixels: [0, 1, 2]) }
    #expect(throws: QwenImageError.self) { try VisionSourceImage(width: 1, height: 1, channels: 2, pixels: [0, 0]) }
    let img = try RGBImage(width: 2, height: 2, pixels: [UInt8](repeating: 7, count: 12))
    #expect(throws: QwenImageError.self) { try img.resized(width: 0, height: 3, filter: .bicubic) }
    #expect(throws: QwenImageError.self) { try PILResample.resize([1, 2, 3], width: 2, height: 2, channels: 3, toWidth: 1, toHeight: 1, filter: .lanczos) }
    #expect(throws: QwenImageError.self) { try PILResample.resizeRGBA([1, 2, 3, 4], width: 2, height: 1, toWidth: 1, toHeight: 1, filter: .lanczos) }
    // patchify needs both sides to be multiples of patch × merge (28).
    let notMultiple = try RGBImage(width: 28, height: 30, pixels: [UInt8](repeating: 7, count: 28 * 30 * 3))
    #expect(throws: QwenImageError.self) { try VisionPreprocessor().patchify(notMultiple) }
    #expect(throws: QwenImageError.self) {
        try VisionInput.prepare(images: [VisionSourceImage(img)], paths: [], mode: .edit, preresize: false, processor: VisionPreprocessor())
    }
}
