#!/usr/bin/env python3
"""Out-of-window flood for the namespace lab (tests/lab/lab.sh).

For each of N flows: a SYN, then one 700-byte segment 32,001 bytes past the
ISN, as raw Ethernet frames on IFACE (AF_PACKET, needs root). The segment
lies far ahead in the window, so a censor that reassembles the client stream
must hold it; before reassembly memory followed bytes held, each such flow
pinned a 32 KiB buffer. Frames go to DST (an address nobody answers), so
nothing replies and every flow stays half-open.

usage: flood.py IFACE SRC_IP DST_IP FLOWS
"""
import socket
import struct
import sys
import time


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def segment(src: bytes, dst: bytes, sport: int, seq: int, flags: int, payload: bytes) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, 443, seq, 0, 5 << 4, flags, 65535, 0, 0) + payload
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return ip + tcp


def main() -> None:
    iface, src_ip, dst_ip, flows = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    assert flows <= 40000, "bounded: at most 40,000 flows"
    src, dst = socket.inet_aton(src_ip), socket.inet_aton(dst_ip)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    mac = open(f"/sys/class/net/{iface}/address").read().strip()
    eth = bytes.fromhex("02005e000005") + bytes.fromhex(mac.replace(":", "")) + b"\x08\x00"
    junk = b"\x16" * 700
    deadline = time.monotonic() + 60
    for i in range(flows):
        if time.monotonic() > deadline:
            break
        sport = 20000 + i
        isn = (i * 2654435761) & 0xFFFFFFFF
        s.send(eth + segment(src, dst, sport, isn, 0x02, b""))
        s.send(eth + segment(src, dst, sport, (isn + 32001) & 0xFFFFFFFF, 0x18, junk))
        if i % 500 == 499:
            time.sleep(0.01)  # keep under the bridge's queue
    print(f"sent {2 * (i + 1)} frames for {i + 1} flows")


if __name__ == "__main__":
    main()
