#!/usr/bin/python3
"""mkljpeg: lossless JPEG (T.81 process 14) DICOM files for tests/tools/dicom.sh,
made from MR_small.dcm's stored values (16-bit, 64 x 64) by a minimal encoder:
one grey component, one Huffman table (17 codes of 5 bits: category t is code
t), any predictor, an optional restart interval and point transform.

    mkljpeg.py MR_small.dcm

writes ljpeg_p1.dcm .. ljpeg_p7.dcm (predictors 1 to 7), ljpeg_rst.dcm (a
restart interval of 8 rows), ljpeg_pt.dcm (point transform 2, of the values
with their 2 low bits cleared), ljpeg_cut.dcm (the coded data cut in half).
"""
import struct
import sys

W = H = 64
P = 16


def encode(pix, predictor, restart=0, pt=0):
    pix = [v >> pt for v in pix]
    out = bytearray()
    state = {"acc": 0, "nbits": 0}

    def put(v, n):
        for i in range(n - 1, -1, -1):
            state["acc"] = state["acc"] << 1 | (v >> i & 1)
            state["nbits"] += 1
            if state["nbits"] == 8:
                out.append(state["acc"])
                if state["acc"] == 0xFF:
                    out.append(0)
                state["acc"], state["nbits"] = 0, 0

    def flush():
        while state["nbits"]:
            put(1, 1)

    reset_row, rst = 0, 0
    for i, v in enumerate(pix):
        y, x = divmod(i, W)
        if restart and i and i % restart == 0:
            flush()
            out.extend(bytes([0xFF, 0xD0 + rst]))
            rst = (rst + 1) & 7
            reset_row = y
        if y == reset_row:
            pred = pix[i - 1] if x else 1 << (P - pt - 1)
        elif x == 0:
            pred = pix[i - W]
        else:
            ra, rb, rc = pix[i - 1], pix[i - W], pix[i - W - 1]
            pred = [ra, rb, rc, ra + rb - rc, ra + ((rb - rc) >> 1), rb + ((ra - rc) >> 1),
                    (ra + rb) >> 1][predictor - 1]
        d = (v - pred) & 0xFFFF
        d = d - 65536 if d >= 32768 else d
        t = abs(d).bit_length() if d != -32768 else 16
        put(t, 5)
        if 0 < t < 16:
            put(d if d > 0 else d + (1 << t) - 1, t)
    flush()

    def seg(m, body):
        return bytes([0xFF, m]) + struct.pack(">H", len(body) + 2) + body

    j = b"\xFF\xD8" + seg(0xC3, struct.pack(">BHHB", P, H, W, 1) + bytes([1, 0x11, 0]))
    j += seg(0xC4, bytes([0]) + bytes(4) + bytes([17]) + bytes(11) + bytes(range(17)))
    if restart:
        j += seg(0xDD, struct.pack(">H", restart))
    j += seg(0xDA, bytes([1, 1, 0, predictor, 0, pt])) + bytes(out) + b"\xFF\xD9"
    return j


def main():
    data = open(sys.argv[1], "rb").read()
    pixel_tag = struct.pack("<HH2s2xI", 0x7FE0, 0x10, b"OW", 2 * W * H)
    at = data.rindex(pixel_tag)
    vals = list(struct.unpack(f"<{W * H}H", data[at + 12:at + 12 + 2 * W * H]))
    head = data[:at]
    old_ts = b"1.2.840.10008.1.2.1\0"

    def write(name, ts, jpeg):
        # MR_small's data set, another transfer syntax, encapsulated pixels.
        new_ts = ts.encode() + b"\0" * (len(ts) % 2)
        body = head.replace(struct.pack("<HH2sH", 2, 0x10, b"UI", len(old_ts)) + old_ts,
                            struct.pack("<HH2sH", 2, 0x10, b"UI", len(new_ts)) + new_ts)
        g = body.index(struct.pack("<HH2sH", 2, 0, b"UL", 4))
        mlen = struct.unpack("<I", body[g + 8:g + 12])[0] + len(new_ts) - len(old_ts)
        body = body[:g + 8] + struct.pack("<I", mlen) + body[g + 12:]
        jpeg += b"\0" * (len(jpeg) % 2)
        pix = struct.pack("<HH2s2xI", 0x7FE0, 0x10, b"OB", 0xFFFFFFFF) + struct.pack("<HHI", 0xFFFE, 0xE000, 0)
        pix += struct.pack("<HHI", 0xFFFE, 0xE000, len(jpeg)) + jpeg + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
        open(name, "wb").write(body + pix)

    for p in range(1, 8):
        write(f"ljpeg_p{p}.dcm", "1.2.840.10008.1.2.4.70" if p == 1 else "1.2.840.10008.1.2.4.57", encode(vals, p))
    write("ljpeg_rst.dcm", "1.2.840.10008.1.2.4.57", encode(vals, 4, restart=W * 8))
    write("ljpeg_pt.dcm", "1.2.840.10008.1.2.4.57", encode([v & ~3 for v in vals], 6, pt=2))
    cut = encode(vals, 1)
    write("ljpeg_cut.dcm", "1.2.840.10008.1.2.4.70", cut[:len(cut) // 2] + b"\xFF\xD9")


main()
