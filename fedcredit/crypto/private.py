"""The secret half of every scheme: fast encryption for the key owner, and decryption, both
spread over worker processes that rebuild the key once from its serialization."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence

from gmpy2 import mpz

from ..errors import InvalidCiphertext, InvalidInput
from .base import CipherVector, PublicKey
from .parallel import map_ordered, resolve_workers, warm


class PrivateKey(ABC):
    """Secret half: fast (CRT) encryption for the key owner, and decryption.

    A scheme supplies ``_encrypt_local`` and ``_decrypt_local`` (one process); the batch
    methods here spread them over worker processes, which rebuild the key (and its tables)
    once from its serialization.
    """

    public_key: PublicKey

    #: below this many plaintexts, worker processes cost more than they save
    PARALLEL_THRESHOLD = 1024

    @abstractmethod
    def _encrypt_local(self, plaintexts: Sequence[int], randomisers=None) -> list:
        """Encrypt in this process (with ``randomisers`` made ahead, where the scheme has
        them: :attr:`separable_randomisers`); returns raw ciphertexts."""

    @abstractmethod
    def _decrypt_local(self, values: list, offset: int = 0) -> list[int]:
        """Decrypt in this process; ``offset`` numbers ciphertexts in error messages."""

    @abstractmethod
    def to_bytes(self) -> bytes:
        """Secret serialization (keep it secret)."""

    def encrypt(self, plaintexts: Sequence[int], workers: int | None = None) -> CipherVector:
        pk = self.public_key
        w = resolve_workers(workers)
        if w <= 1 or len(plaintexts) < self.PARALLEL_THRESHOLD:
            return pk._wrap(self._encrypt_local(plaintexts), fresh=True)
        data = b"".join(self.encrypt_bytes_iter(plaintexts, workers=w))
        frm, width = mpz.from_bytes, pk.ciphertext_bytes
        return pk._wrap([frm(data[i:i + width], "big") for i in range(0, len(data), width)],
                        fresh=True)

    def encrypt_bytes_iter(self, plaintexts: Sequence[int], chunk: int = 2048,
                           workers: int | None = None) -> Iterator[bytes]:
        """Encrypt in chunks, yielding each chunk's serialized ciphertexts in order.

        With several workers, later chunks are encrypted while earlier ones are consumed,
        which is how the bank overlaps encryption with sending. Chunks whose randomisers
        are in stock (:meth:`stock_randomisers`) are encrypted here, first, at a few
        multiplications per value.
        """
        pk = self.public_key
        pk._checked(plaintexts)
        w = resolve_workers(workers)
        chunks = [list(map(int, c)) for c in iter_chunks(plaintexts, chunk)]
        done = 0
        while self._stock is not None and done < len(chunks):
            rand = self._stock.take(len(chunks[done]))
            if rand is None:
                break
            yield pk._serialize(self._encrypt_local(chunks[done], rand))
            self.randomisers_used += len(chunks[done])
            done += 1
        chunks = chunks[done:]
        if self._stock is not None and chunks:
            self._stock.pause()  # the workers encrypt the rest now
        if w <= 1 or sum(map(len, chunks)) < self.PARALLEL_THRESHOLD:
            for c in chunks:
                yield pk._serialize(self._encrypt_local(c))
            return
        yield from map_ordered(_worker_encrypt, chunks, w, self.to_bytes())

    #: randomisers made ahead of time (schemes whose randomiser is separable: Paillier, OU)
    _stock = None
    separable_randomisers = False
    randomisers_used = 0  # encryptions made with a stocked randomiser

    def _randomisers_local(self, count: int) -> tuple[list, list]:
        """The randomisers of ``count`` encryptions, one residue modulo each of
        :meth:`_randomiser_moduli` per encryption, independent of the messages."""
        raise NotImplementedError(f"{type(self).__name__} has no separable randomiser")

    def _randomiser_moduli(self) -> tuple[mpz, mpz]:
        raise NotImplementedError(f"{type(self).__name__} has no separable randomiser")

    def _randomisers_to_bytes(self, rand: tuple[list, list]) -> bytes:
        wa, wb = (_width(m) for m in self._randomiser_moduli())
        return b"".join(a.to_bytes(wa, "big") + b.to_bytes(wb, "big") for a, b in zip(*rand))

    def _randomisers_from_bytes(self, data: bytes) -> tuple[list, list]:
        wa, wb = (_width(m) for m in self._randomiser_moduli())
        step, frm = wa + wb, mpz.from_bytes
        if len(data) % step:
            raise InvalidInput(f"randomisers: {len(data)} bytes is not a multiple of {step}")
        return ([frm(data[i:i + wa], "big") for i in range(0, len(data), step)],
                [frm(data[i + wa:i + step], "big") for i in range(0, len(data), step)])

    def stock_randomisers(self, count: int, workers: int | None = None) -> bool:
        """Start making the randomisers of the next ``count`` encryptions in the background
        (kept up to ``count``, and to :data:`~.randomisers.MAX_STOCK_BYTES`); False for a
        scheme whose randomiser is not separable."""
        if not self.separable_randomisers:
            return False
        from .randomisers import MAX_STOCK_BYTES, RandomiserStock

        if self._stock is None:
            self._stock = RandomiserStock(self)
        cap = MAX_STOCK_BYTES // self._randomiser_memory()
        self._stock.fill_to(min(int(count), cap), resolve_workers(workers))
        return True

    def _randomiser_memory(self) -> int:
        """Bytes one stocked randomiser holds: each residue its width plus ~48 bytes of mpz
        header, and two list slots (OU 2048: 360 B, Paillier 2048: 624 B; measured)."""
        return sum(_width(m) + 48 for m in self._randomiser_moduli()) + 16

    def drop_randomisers(self) -> None:
        """Stop making randomisers and forget those made (the key encrypts nothing more)."""
        if self._stock is not None:
            self._stock.close()
            self._stock = None  # a later batch (the next fold's fit) starts a new one

    def randomisers_ready(self) -> int:
        return 0 if self._stock is None else len(self._stock)

    def warm_up(self, workers: int | None = None) -> None:
        """Start the worker processes and build their tables now, without waiting.

        Called when a session key is made, so the table cost overlaps with alignment.
        """
        w = resolve_workers(workers)
        if w > 1:
            warm(_worker_encrypt, [[0]] * w, w, self.to_bytes())

    def decrypt(self, a: CipherVector, workers: int | None = None) -> list[int]:
        """Signed plaintexts."""
        pk = self.public_key
        pk._check(a)
        N = pk.cipher_modulus
        for i, c in enumerate(a.values):
            if not 0 < c < N:
                raise InvalidCiphertext(f"ciphertext {i} is outside (0, N)")
        w = resolve_workers(workers)
        if w <= 1 or len(a) < 64:
            return self._decrypt_local(a.values)
        size = max(8, -(-len(a) // (4 * w)))
        chunks = [(pk._serialize(list(c)), i * size)
                  for i, c in enumerate(iter_chunks(a.values, size))]
        out: list[int] = []
        for part in map_ordered(_worker_decrypt, chunks, w, self.to_bytes()):
            out.extend(part)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(public={self.public_key!r})"


# -- worker side: one cached key per worker process -------------------------------------------
_WORKER_KEY: dict[bytes, PrivateKey] = {}


def _worker_key(secret: bytes) -> PrivateKey:
    key = _WORKER_KEY.get(secret)
    if key is None:
        from . import load_private_key  # the scheme registry

        key = load_private_key(secret)
        _WORKER_KEY.clear()  # one session's key at a time per worker
        _WORKER_KEY[secret] = key
    return key


def _worker_encrypt(chunk: list, secret: bytes) -> bytes:
    key = _worker_key(secret)
    pk = key.public_key
    return pk._serialize(key._encrypt_local(chunk))


def _worker_decrypt(task: tuple[bytes, int], secret: bytes) -> list[int]:
    data, offset = task
    key = _worker_key(secret)
    width = key.public_key.ciphertext_bytes
    frm = mpz.from_bytes
    return key._decrypt_local([frm(data[i:i + width], "big") for i in range(0, len(data), width)],
                              offset)


def _width(modulus) -> int:
    return (int(modulus).bit_length() + 7) // 8


def iter_chunks(items: Sequence, size: int) -> Iterable[Sequence]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
