#!/usr/bin/env python3
"""The gate's OCI image: builds it reproducibly, and reads a module back out of one.

The image is the Wasm image format's "compat" variant with OCI media types: an image manifest
(application/vnd.oci.image.manifest.v1+json) whose single layer
(application/vnd.oci.image.layer.v1.tar+gzip) is a gzipped tar holding one file, plugin.wasm.
Istio's agent and Envoy Gateway both pull it (pkg/wasm/imagefetcher.go and
internal/wasm/imagefetcher.go, extractOCIStandardImage: the last layer, that media type, the
first tar entry named plugin.wasm); envoy/README.md says why this variant and not the other.

Reproducible: the same module gives the same bytes, so the same manifest digest, on any run,
day or machine with the same zlib. Nothing of the build's time, user, path or umask goes in: the
tar entry has mtime 0, owner 0:0, mode 0644 and no user names; the gzip header is written here
(no file name, mtime 0, OS "unknown") so Python versions that write it differently do not matter;
JSON is compact with sorted keys. What remains is zlib's deflate at level 9: a zlib that
compresses differently (zlib-ng, for one) gives another layer and another digest, still valid.

  oci_image.py build MODULE LAYOUT_DIR ARCHIVE TAG   # prints the manifest digest
  oci_image.py extract LAYOUT_DIR TAG OUT            # the module, as Istio reads it; prints the digest

Python 3.11 standard library only.
"""

import gzip
import hashlib
import io
import json
import os
import shutil
import struct
import sys
import tarfile
import zlib

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
# The Docker manifest type Istio and Envoy Gateway send down another path (extractDockerImage).
DOCKER_MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
REF_NAME = "org.opencontainers.image.ref.name"
# The file name the compat variant requires (solo-io/wasm spec-compat.md, and both fetchers).
PLUGIN_NAME = "plugin.wasm"
WASM_MAGIC = b"\0asm"


class ImageError(Exception):
    """The image or the module is not what the fetchers would accept."""


def canonical_json(value):
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=True).encode()


def digest_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(media_type, data):
    return {"mediaType": media_type, "digest": digest_of(data), "size": len(data)}


def layer_tar(module):
    """A tar with plugin.wasm only, nothing in it from the machine or the moment."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(PLUGIN_NAME)
        info.size = len(module)
        info.mtime = 0
        info.mode = 0o644
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.type = tarfile.REGTYPE
        tar.addfile(info, io.BytesIO(module))
    return buf.getvalue()


def gzip_fixed(data):
    """RFC 1952 with a fixed header: no name, mtime 0, XFL 2 (level 9), OS 255 (unknown)."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS, 9, zlib.Z_DEFAULT_STRATEGY)
    body = deflate.compress(data) + deflate.flush()
    header = b"\x1f\x8b\x08\x00" + struct.pack("<I", 0) + b"\x02\xff"
    trailer = struct.pack("<II", zlib.crc32(data) & 0xFFFFFFFF, len(data) & 0xFFFFFFFF)
    return header + body + trailer


def image_blobs(module, tag):
    """The image's blobs, and its manifest and index, as bytes."""
    if not module.startswith(WASM_MAGIC):
        raise ImageError("the module does not start with the wasm magic bytes")
    tar = layer_tar(module)
    layer = gzip_fixed(tar)
    config = canonical_json(
        {
            # Not a container: the platform says what the layer holds. Neither fetcher reads the
            # config; a registry stores it as it stores any image's.
            "architecture": "wasm",
            "os": "wasip1",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [digest_of(tar)]},
        }
    )
    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": descriptor(CONFIG_TYPE, config),
            "layers": [descriptor(LAYER_TYPE, layer)],
        }
    )
    entry = descriptor(MANIFEST_TYPE, manifest)
    entry["annotations"] = {REF_NAME: tag}
    index = canonical_json({"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [entry]})
    return [config, layer, manifest], index, digest_of(manifest)


def layout_files(module, tag):
    """(path in the layout, bytes), sorted by path; and the manifest digest."""
    blobs, index, manifest_digest = image_blobs(module, tag)
    files = {"oci-layout": canonical_json({"imageLayoutVersion": "1.0.0"}), "index.json": index}
    for blob in blobs:
        files["blobs/sha256/" + hashlib.sha256(blob).hexdigest()] = blob
    return sorted(files.items()), manifest_digest


def write_archive(files, path):
    """The layout as one tar (`oci-archive:` to skopeo), entries sorted, nothing of the machine."""

    def entry(name, kind, size=0):
        info = tarfile.TarInfo(name)
        info.type = kind
        info.size = size
        info.mtime = 0
        info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for directory in ("blobs", "blobs/sha256"):
            tar.addfile(entry(directory, tarfile.DIRTYPE))
        for name, data in files:
            tar.addfile(entry(name, tarfile.REGTYPE, len(data)), io.BytesIO(data))
    with open(path, "wb") as f:
        f.write(buf.getvalue())


def build(module_path, layout_dir, archive_path, tag):
    with open(module_path, "rb") as f:
        module = f.read()
    files, manifest_digest = layout_files(module, tag)
    if os.path.lexists(layout_dir):
        shutil.rmtree(layout_dir)
    os.makedirs(os.path.join(layout_dir, "blobs", "sha256"))
    for name, data in files:
        with open(os.path.join(layout_dir, name), "wb") as f:
            f.write(data)
    write_archive(files, archive_path)
    return manifest_digest


def read_blob(layout_dir, digest):
    """A blob of the layout, refused unless its bytes hash to its name (as a client checks)."""
    algorithm, _, hex_digest = digest.partition(":")
    if algorithm != "sha256" or len(hex_digest) != 64 or any(c not in "0123456789abcdef" for c in hex_digest):
        raise ImageError(f"not a sha256 digest: {digest!r}")
    with open(os.path.join(layout_dir, "blobs", "sha256", hex_digest), "rb") as f:
        data = f.read()
    if digest_of(data) != digest:
        raise ImageError(f"blob {digest} holds bytes whose digest is {digest_of(data)}")
    return data


def extract(layout_dir, tag):
    """The module in the image tagged `tag`, by the rules of Istio's and Envoy Gateway's
    compat path, and the manifest digest."""
    with open(os.path.join(layout_dir, "index.json"), "rb") as f:
        index = json.load(f)
    entries = [m for m in index.get("manifests", []) if m.get("annotations", {}).get(REF_NAME) == tag]
    if len(entries) != 1:
        raise ImageError(f"{len(entries)} manifests tagged {tag!r} in {layout_dir}/index.json")
    manifest_digest = entries[0]["digest"]
    manifest = json.loads(read_blob(layout_dir, manifest_digest))
    if manifest.get("mediaType") == DOCKER_MANIFEST_TYPE:
        raise ImageError("a Docker manifest: the fetchers would take their Docker path, not this one")
    layers = manifest.get("layers") or []
    if not layers:
        raise ImageError("the image has no layer")
    last = layers[-1]
    if last.get("mediaType") != LAYER_TYPE:
        raise ImageError(f"the last layer is {last.get('mediaType')!r}, not {LAYER_TYPE}")
    tar_bytes = gzip.decompress(read_blob(layout_dir, last["digest"]))
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
        for member in tar:
            if os.path.basename(member.name) == PLUGIN_NAME and member.isfile():
                module = tar.extractfile(member).read()
                if not module.startswith(WASM_MAGIC):
                    raise ImageError(f"{member.name} is not a wasm module")
                return module, manifest_digest
    raise ImageError(f"{PLUGIN_NAME} not found in the last layer")


def main(argv):
    try:
        if len(argv) == 5 and argv[0] == "build":
            print(build(argv[1], argv[2], argv[3], argv[4]))
        elif len(argv) == 4 and argv[0] == "extract":
            module, manifest_digest = extract(argv[1], argv[2])
            with open(argv[3], "wb") as f:
                f.write(module)
            print(manifest_digest)
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except (ImageError, OSError, EOFError, ValueError, KeyError, TypeError, zlib.error, tarfile.TarError) as e:
        print(f"oci_image.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
