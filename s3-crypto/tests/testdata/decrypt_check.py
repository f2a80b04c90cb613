#!/usr/bin/env python3
"""Decrypt messages written by the Rust crate with the Python AWS Encryption SDK and compare.

Usage: python decrypt_check.py DIR
DIR holds NAME.msg (a message), NAME.plain (the expected plaintext) and NAME.key (JSON:
namespace, name, key as hex, encryption context). Prints one line per message; exits non-zero on any
mismatch. Pinned: pip install 'aws-encryption-sdk[MPL]==4.0.7'.
"""
import json
import os
import sys

import aws_encryption_sdk
from aws_encryption_sdk import CommitmentPolicy
from aws_cryptographic_material_providers.mpl import AwsCryptographicMaterialProviders
from aws_cryptographic_material_providers.mpl.config import MaterialProvidersConfig
from aws_cryptographic_material_providers.mpl.models import AesWrappingAlg, CreateRawAesKeyringInput

ALGS = {
    16: AesWrappingAlg.ALG_AES128_GCM_IV12_TAG16,
    24: AesWrappingAlg.ALG_AES192_GCM_IV12_TAG16,
    32: AesWrappingAlg.ALG_AES256_GCM_IV12_TAG16,
}


def main(directory):
    mpl = AwsCryptographicMaterialProviders(config=MaterialProvidersConfig())
    client = aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
    )
    failures = 0
    names = sorted(f[: -len(".msg")] for f in os.listdir(directory) if f.endswith(".msg"))
    for name in names:
        path = os.path.join(directory, name)
        with open(path + ".key") as f:
            spec = json.load(f)
        key = bytes.fromhex(spec["key"])
        keyring = mpl.create_raw_aes_keyring(
            CreateRawAesKeyringInput(
                key_namespace=spec["namespace"], key_name=spec["name"], wrapping_key=key, wrapping_alg=ALGS[len(key)]
            )
        )
        with open(path + ".msg", "rb") as f:
            message = f.read()
        with open(path + ".plain", "rb") as f:
            expected = f.read()
        try:
            plaintext, header = client.decrypt(source=message, keyring=keyring)
            ok = plaintext == expected
            for k, v in spec["context"].items():
                ok = ok and header.encryption_context.get(k) == v
            detail = "" if ok else "plaintext or context differs"
        except Exception as e:  # noqa: BLE001 - report every failure and go on
            ok, detail = False, repr(e)
        print(("ok   " if ok else "FAIL ") + name + (" " + detail if detail else ""))
        failures += 0 if ok else 1
    print(f"{len(names) - failures} passed, {failures} failed")
    return 1 if failures or not names else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
