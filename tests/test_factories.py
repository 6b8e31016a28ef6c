"""The tiny-checkpoint factories themselves."""


def test_tiny_checkpoints_are_the_same_every_build(tmp_path):
    """Tests depend on what the random tiny models say; their folders must not vary by run."""
    import hashlib

    import factory

    def digest(root):
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file()}

    factory.build_all(tmp_path / "a")
    factory.build_all(tmp_path / "b")
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
