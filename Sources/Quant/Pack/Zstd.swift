import CZstd

/// Independent zstd frames (with zstd's own content checksum), one per payload chunk, so frames can
/// be decompressed in parallel straight into their place in a shard buffer.
public enum Zstd {
    public static let minLevel = 1
    public static var maxLevel: Int { Int(ZSTD_maxCLevel()) }

    public static func compressBound(_ n: Int) -> Int { ZSTD_compressBound(n) }

    /// Compresses `src` into `dst` (capacity at least compressBound(src.count)); returns the frame size.
    public static func compress(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer, level: Int)
        throws(ZstdFailure) -> Int
    {
        guard let cctx = ZSTD_createCCtx() else { throw ZstdFailure(message: "cannot create a compression context") }
        defer { ZSTD_freeCCtx(cctx) }
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, Int32(level))
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1)
        let r = ZSTD_compress2(cctx, dst.baseAddress, dst.count, src.baseAddress, src.count)
        if ZSTD_isError(r) != 0 { throw ZstdFailure(message: String(cString: ZSTD_getErrorName(r))) }
        return r
    }

    /// Decompresses one frame that must produce exactly `dst.count` bytes.
    public static func decompress(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer)
        throws(ZstdFailure)
    {
        let r = ZSTD_decompress(dst.baseAddress, dst.count, src.baseAddress, src.count)
        if ZSTD_isError(r) != 0 { throw ZstdFailure(message: String(cString: ZSTD_getErrorName(r))) }
        if r != dst.count {
            throw ZstdFailure(message: "frame decompressed to \(r) bytes, expected \(dst.count)")
        }
    }
}

public struct ZstdFailure: Error, Sendable { public let message: String }
