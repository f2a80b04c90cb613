#!/usr/bin/env python3
"""Regenerate the golden vectors in this directory with the Python AWS Encryption SDK.

Pinned: pip install 'aws-encryption-sdk[MPL]==4.0.7'   (pulls aws-cryptographic-material-providers 1.11.3)
Run:    python generate.py            (from this directory; overwrites py_*.bin and fail_*.bin)

Every message is encrypted with the MPL Raw AES keyring below (fixed wrapping keys, namespace
"envelope-test"), the encryption context ENCRYPTION_CONTEXT, and the plaintext `plaintext(n)`:
byte i is (i * 31 + 7) % 251.  File names:

    py_<suite id hex>_<framed<frame length>|nonframed>_<plaintext length>.bin      must decrypt
    fail_<reason>_<description>.bin                                               must be rejected

`<reason>` names the error kind the Rust test expects (see tests/vectors.rs).
Message IDs, data keys and signing keys are random, so regenerating changes every byte;
the Rust test only checks that each file decrypts to `plaintext(n)` (or is rejected).
"""
import os

import aws_encryption_sdk
from aws_encryption_sdk import CommitmentPolicy
from aws_encryption_sdk.identifiers import Algorithm
from aws_cryptographic_material_providers.mpl import AwsCryptographicMaterialProviders
from aws_cryptographic_material_providers.mpl.config import MaterialProvidersConfig
from aws_cryptographic_material_providers.mpl.models import (
    AesWrappingAlg,
    CreateMultiKeyringInput,
    CreateRawAesKeyringInput,
)

NAMESPACE = "envelope-test"
KEYS = {
    # key name -> (wrapping key, MPL wrapping algorithm)
    "raw-aes-256": (bytes(range(32)), AesWrappingAlg.ALG_AES256_GCM_IV12_TAG16),
    "raw-aes-192": (bytes(range(100, 124)), AesWrappingAlg.ALG_AES192_GCM_IV12_TAG16),
    "raw-aes-128": (bytes(range(200, 216)), AesWrappingAlg.ALG_AES128_GCM_IV12_TAG16),
}
ENCRYPTION_CONTEXT = {"purpose": "golden-vector", "tenant": "envelope", "\u00e9t\u00e9": "summer"}
FRAME = 256
SIZES = [0, 1, FRAME - 1, FRAME, FRAME + 1, 3 * FRAME + 7]
V1_SUITES = [0x0014, 0x0046, 0x0078, 0x0114, 0x0146, 0x0178, 0x0214, 0x0346, 0x0378]
V2_SUITES = [0x0478, 0x0578]

HERE = os.path.dirname(os.path.abspath(__file__))
MPL = AwsCryptographicMaterialProviders(config=MaterialProvidersConfig())


def plaintext(n):
    return bytes((i * 31 + 7) % 251 for i in range(n))


def keyring(name, key=None):
    wrapping_key, alg = KEYS[name]
    return MPL.create_raw_aes_keyring(
        CreateRawAesKeyringInput(
            key_namespace=NAMESPACE, key_name=name, wrapping_key=key or wrapping_key, wrapping_alg=alg
        )
    )


def suite(suite_id):
    return next(a for a in Algorithm if a.algorithm_id == suite_id)


def encrypt(suite_id, frame_length, n, key_name="raw-aes-256", key=None, context=None):
    policy = (
        CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
        if suite_id in V2_SUITES
        else CommitmentPolicy.FORBID_ENCRYPT_ALLOW_DECRYPT
    )
    client = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=policy)
    ciphertext, _ = client.encrypt(
        source=plaintext(n),
        keyring=keyring(key_name, key),
        encryption_context=ENCRYPTION_CONTEXT if context is None else context,
        algorithm=suite(suite_id),
        frame_length=frame_length,
    )
    return ciphertext


def write(name, data):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)


def flip(data, index, bit=0x01):
    b = bytearray(data)
    b[index] ^= bit
    return bytes(b)


def main():
    for f in os.listdir(HERE):
        if f.endswith(".bin") and (f.startswith("py_") or f.startswith("fail_")):
            os.remove(os.path.join(HERE, f))
    for suite_id in V2_SUITES + V1_SUITES:
        for n in SIZES:
            write(f"py_{suite_id:04x}_framed{FRAME}_{n}.bin", encrypt(suite_id, FRAME, n))
            write(f"py_{suite_id:04x}_nonframed_{n}.bin", encrypt(suite_id, 0, n))
    # The other wrapping key sizes, and the ESDK's default frame length (4096).
    for name in ("raw-aes-192", "raw-aes-128"):
        write(f"py_0478_framed{FRAME}_{FRAME + 1}_{name}.bin", encrypt(0x0478, FRAME, FRAME + 1, name))
    write("py_0578_framed4096_5000.bin", encrypt(0x0578, 4096, 5000))
    # An empty encryption context serializes to nothing (not even a pair count).
    write(f"py_0478_framed{FRAME}_{FRAME + 1}_empty-context.bin", encrypt(0x0478, FRAME, FRAME + 1, context={}))
    write("py_0578_nonframed_1_empty-context.bin", encrypt(0x0578, 0, 1, context={}))

    # Must be rejected.  Offsets are found from the structure, not hard-coded, where it matters.
    good = encrypt(0x0478, FRAME, 3 * FRAME + 7)
    signed = encrypt(0x0578, FRAME, 3 * FRAME + 7)
    frame_size = 4 + 12 + FRAME + 16
    final_size = 4 + 4 + 12 + 4 + 7 + 16
    body_start = len(good) - 3 * frame_size - final_size
    write("fail_wrongkey_0478.bin", encrypt(0x0478, FRAME, 10, key=bytes(32)))
    write("fail_unsupported_0478_suite-0479.bin", flip(good, 2, 0x01))  # suite id low byte, 0x78 -> 0x79
    write("fail_commitment_0478_message-id.bin", flip(good, 10))  # the commit key is salted with it
    write("fail_tamperedheader_0478_auth-tag.bin", flip(good, body_start - 1))
    write("fail_commitment_0478.bin", flip(good, body_start - 16 - 1))  # last byte of the commitment
    write("fail_tamperedframe_0478_frame2.bin", flip(good, body_start + frame_size + 20))
    write("fail_tamperedframe_0478_final.bin", flip(good, len(good) - 1))
    write("fail_truncated_0478_no-final-frame.bin", good[: body_start + 3 * frame_size])
    write("fail_truncated_0478_half-frame.bin", good[: body_start + frame_size // 2])
    write("fail_truncated_0478_header.bin", good[: body_start - 40])
    reordered = (
        good[:body_start]
        + good[body_start + frame_size : body_start + 2 * frame_size]
        + good[body_start : body_start + frame_size]
        + good[body_start + 2 * frame_size :]
    )
    write("fail_sequence_0478_swapped-frames.bin", reordered)
    write("fail_trailing_0478_extra-byte.bin", good + b"\x00")
    write("fail_signature_0578_last-byte.bin", flip(signed, len(signed) - 1))
    sig_len = next(n for n in range(96, 110) if signed[-n - 2 : -n] == n.to_bytes(2, "big"))
    write("fail_truncated_0578_no-footer.bin", signed[: -sig_len - 2])
    write("fail_truncated_0578_half-footer.bin", signed[: -sig_len // 2])
    v1 = encrypt(0x0178, FRAME, 100)
    write("fail_tamperedheader_0178_reserved.bin", flip(v1, len(v1) - (4 + 4 + 12 + 4 + 100 + 16) - 12 - 16 - 9))
    write("fail_unsupported_version-03.bin", bytes([3]) + good[1:])
    # 17 encrypted data keys (the Rust decryptor's default limit is 16): one generator, 16 children.
    many = MPL.create_multi_keyring(
        CreateMultiKeyringInput(
            generator=keyring("raw-aes-256"),
            child_keyrings=[keyring("raw-aes-128") for _ in range(16)],
        )
    )
    client = aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
    )
    ciphertext, _ = client.encrypt(source=plaintext(10), keyring=many, encryption_context=ENCRYPTION_CONTEXT)
    write("fail_toomanykeys_0578_17-keys.bin", ciphertext)


if __name__ == "__main__":
    main()
