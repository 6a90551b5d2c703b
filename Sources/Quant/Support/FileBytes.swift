import Foundation

/// Reads small input files (manifests, configs, tokenizer files, images, prompts) without trusting
/// them: a FIFO or device named like an input is refused instead of blocking `open()` forever, and a
/// file larger than `limit` is refused before anything is allocated for it.
public enum FileBytes {
    /// Default bound for JSON metadata (manifests, configs, indexes; Qwen2's tokenizer.json is 7 MB).
    public static let metadataLimit = 256 << 20

    /// The whole file, or nil when it does not exist. Throws `QuantError.io` naming the file for
    /// anything else: not a regular file, larger than `limit`, unreadable.
    public static func read(_ path: String, limit: Int = metadataLimit) throws -> Data? {
        // O_NONBLOCK: opening a FIFO for reading then returns at once (and fstat tells what it is).
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        if fd < 0 {
            if errno == ENOENT || errno == ENOTDIR { return nil }
            throw QuantError.io(path: path, message: "cannot open: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        let size = try regularFileSize(fd, path: path)
        guard size <= limit else {
            throw QuantError.io(path: path, message: "is \(ByteSize.format(size)), larger than the \(ByteSize.format(limit)) accepted for this kind of file")
        }
        var data = Data(count: size)
        var done = 0
        try data.withUnsafeMutableBytes { buf in
            while done < size {
                let n = Foundation.read(fd, buf.baseAddress! + done, size - done)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else {
                    throw QuantError.io(path: path, message: n == 0 ? "shrank while being read (\(done) of \(size) bytes)"
                                                                    : "read failed: \(String(cString: strerror(errno)))")
                }
                done += n
            }
        }
        return data
    }

    /// fstat of an open descriptor: its size when it is a regular file, else an error naming what it is.
    static func regularFileSize(_ fd: Int32, path: String) throws -> Int {
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw QuantError.io(path: path, message: "cannot stat: \(String(cString: strerror(errno)))")
        }
        let type = st.st_mode & S_IFMT
        guard type == S_IFREG else {
            let kind = type == S_IFDIR ? "a folder" : type == S_IFIFO ? "a FIFO (named pipe)" : type == S_IFCHR ? "a character device"
                : type == S_IFBLK ? "a block device" : type == S_IFSOCK ? "a socket" : "not a regular file"
            throw QuantError.io(path: path, message: "is \(kind); expected a regular file")
        }
        return Int(st.st_size)
    }
}
