"""ChaCha12 from its specification (RFC 7539's block, 12 rounds), seeded as rand_core's
seed_from_u64 does (PCG32 filling the 32-byte key): an implementation independent of
rand_chacha, to check the words `tests/draw.rs` pins. Run: python3 scripts/chacha12.py"""

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1


def pcg32_key(seed):
    state, out = seed, b""
    while len(out) < 32:
        state = (state * 6364136223846793005 + 11634580027462260723) & M64
        xs = (((state >> 18) ^ state) >> 27) & M32
        rot = state >> 59
        out += (((xs >> rot) | (xs << ((-rot) & 31))) & M32).to_bytes(4, "little")
    return out


def rotl(v, c):
    return ((v << c) | (v >> (32 - c))) & M32


def quarter(x, a, b, c, d):
    x[a] = (x[a] + x[b]) & M32; x[d] = rotl(x[d] ^ x[a], 16)
    x[c] = (x[c] + x[d]) & M32; x[b] = rotl(x[b] ^ x[c], 12)
    x[a] = (x[a] + x[b]) & M32; x[d] = rotl(x[d] ^ x[a], 8)
    x[c] = (x[c] + x[d]) & M32; x[b] = rotl(x[b] ^ x[c], 7)


def block(key, counter, stream, rounds=12):
    k = [int.from_bytes(key[4 * i:4 * i + 4], "little") for i in range(8)]
    state = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574] + k + [counter & M32, counter >> 32, stream & M32, stream >> 32]
    x = state[:]
    for _ in range(rounds // 2):
        quarter(x, 0, 4, 8, 12); quarter(x, 1, 5, 9, 13); quarter(x, 2, 6, 10, 14); quarter(x, 3, 7, 11, 15)
        quarter(x, 0, 5, 10, 15); quarter(x, 1, 6, 11, 12); quarter(x, 2, 7, 8, 13); quarter(x, 3, 4, 9, 14)
    return [(x[i] + state[i]) & M32 for i in range(16)]


def first_words(seed, stream=0, n=3):
    w = block(pcg32_key(seed), 0, stream)
    return [w[2 * i] | (w[2 * i + 1] << 32) for i in range(n)]


if __name__ == "__main__":
    print("seed 42:", first_words(42))
    print("seed 42, stream 7:", first_words(42, 7))
