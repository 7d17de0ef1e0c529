"""Tests for feat3d.io.decode: frame counts, sizes, rotation, streaming, errors."""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import tracemalloc
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import feat3d.io.decode as decode_mod
from feat3d.io import VideoDecodeError, VideoInfo, iter_clips, iter_frames, open_video
from tests.videos import (
    frame_id,
    marker_corner,
    truncate_copy,
    write_audio_only,
    write_empty,
    write_text,
)


def ids(path: Path, **kwargs) -> list[int]:
    return [frame_id(f.image) for f in iter_frames(path, **kwargs)]


class TestFrames:
    @pytest.mark.parametrize("codec", ["h264", "mpeg4"])
    @pytest.mark.parametrize("n_frames", [8, 17, 200])
    def test_exact_count_and_order(self, video_factory, tmp_path, codec, n_frames) -> None:
        path = video_factory(tmp_path / "v.mp4", n_frames=n_frames, codec=codec)
        frames = list(iter_frames(path))
        assert [f.index for f in frames] == list(range(n_frames))
        assert [frame_id(f.image) for f in frames] == list(range(n_frames))
        assert [f.time for f in frames] == pytest.approx([i / 25 for i in range(n_frames)])
        assert all(f.duration == pytest.approx(1 / 25) for f in frames)

    def test_matroska(self, video_factory, tmp_path) -> None:
        path = video_factory(tmp_path / "v.mkv", n_frames=30)
        assert ids(path) == list(range(30))

    def test_default_output(self, short_video) -> None:
        frame = next(iter_frames(short_video))
        assert frame.image.shape == (112, 112, 3)
        assert frame.image.dtype == np.uint8
        assert frame.image.flags["C_CONTIGUOUS"]

    @pytest.mark.parametrize("threads", [1, 2])
    def test_threads_do_not_change_output(self, video_factory, tmp_path, threads) -> None:
        path = video_factory(tmp_path / "v.mp4", n_frames=30, pattern="texture")
        auto = [f.image for f in iter_frames(path, threads=0)]
        fixed = [f.image for f in iter_frames(path, threads=threads)]
        assert len(auto) == len(fixed) == 30
        assert all(np.array_equal(a, b) for a, b in zip(auto, fixed, strict=True))

    def test_info_out(self, short_video) -> None:
        info: list[VideoInfo] = []
        frames = iter_frames(short_video, info_out=info)
        assert info == []  # lazy: nothing opened yet
        next(frames)
        assert info == [open_video(short_video)]
        frames.close()


class TestSize:
    def test_short_side_keeps_aspect(self, video_factory, tmp_path) -> None:
        landscape = video_factory(tmp_path / "l.mp4", width=64, height=48, n_frames=3)
        portrait = video_factory(tmp_path / "p.mp4", width=48, height=64, n_frames=3)
        assert next(iter_frames(landscape, crop=None)).image.shape == (112, 149, 3)
        assert next(iter_frames(portrait, crop=None)).image.shape == (149, 112, 3)
        assert next(iter_frames(landscape, size=24, crop=None)).image.shape == (24, 32, 3)

    def test_exact_size(self, short_video) -> None:
        assert next(iter_frames(short_video, size=(128, 171), crop=None)).image.shape == (
            128,
            171,
            3,
        )
        assert next(iter_frames(short_video, size=(128, 171))).image.shape == (112, 112, 3)

    def test_no_resize(self, short_video) -> None:
        assert next(iter_frames(short_video, size=None, crop=None)).image.shape == (48, 64, 3)

    def test_rectangular_crop(self, short_video) -> None:
        frame = next(iter_frames(short_video, size=(128, 171), crop=(100, 150)))
        assert frame.image.shape == (100, 150, 3)

    def test_crop_is_centred_like_torchvision(self, video_factory, tmp_path) -> None:
        path = video_factory(tmp_path / "t.mp4", n_frames=2, width=65, height=49, pattern="texture")
        full = next(iter_frames(path, size=None, crop=None)).image
        cropped = next(iter_frames(path, size=None, crop=(20, 30))).image
        top, left = round((49 - 20) / 2), round((65 - 30) / 2)  # torchvision CenterCrop
        assert np.array_equal(cropped, full[top : top + 20, left : left + 30])

    @pytest.mark.parametrize(
        ("size", "crop", "before_crop"),
        [
            (64, 112, (112, 149)),  # short side 64 < crop: upscaled to 112
            ((100, 300), 112, (112, 336)),  # exact size too small in H: uniform upscale
            (None, 112, (112, 149)),  # no resize, 64×48 source smaller than the crop
        ],
    )
    def test_resize_never_smaller_than_crop(self, short_video, size, crop, before_crop) -> None:
        frame = next(iter_frames(short_video, size=size, crop=crop))
        assert frame.image.shape == (112, 112, 3)
        plan = decode_mod._plan(
            coded_w=64, coded_h=48, sar=Fraction(1), rotation=0, size=size, crop=(crop, crop)
        )
        assert (plan.height, plan.width) == before_crop

    def test_resize_is_one_bilinear_swscale_pass(self, video_factory, tmp_path) -> None:
        path = video_factory(tmp_path / "t.mp4", n_frames=3, pattern="texture")
        ours = next(iter_frames(path, size=112, crop=None)).image
        with av.open(str(path)) as container:
            first = next(container.decode(video=0))
            ref = first.to_ndarray(format="gbrp", width=149, height=112, interpolation="BILINEAR")
        assert np.array_equal(ours, ref)

    @pytest.mark.parametrize(("width", "height", "rotation"), [(160, 90, 0), (90, 160, 0),
                                                               (160, 90, 90)])  # fmt: skip
    def test_cropped_frames_are_the_crop_of_the_whole_frame(
        self, video_factory, tmp_path, width, height, rotation
    ) -> None:
        # the crop is cut out while the planes are interleaved: the same pixels as cropping
        # PyAV's whole RGB image
        path = video_factory(tmp_path / "c.mp4", n_frames=3, width=width, height=height,
                             pattern="texture", rotation=rotation)  # fmt: skip
        ours = [f.image for f in iter_frames(path, size=112, crop=(100, 104))]
        wide = round(max(width, height) * 112 / min(width, height))
        coded = (wide, 112) if width > height else (112, wide)
        with av.open(str(path)) as container:
            for image, frame in zip(ours, container.decode(video=0), strict=True):
                whole = frame.to_ndarray(format="gbrp", width=coded[0], height=coded[1],
                                         interpolation="BILINEAR")  # fmt: skip
                whole = np.rot90(whole, k=rotation // 90)
                top, left = round((whole.shape[0] - 100) / 2), round((whole.shape[1] - 104) / 2)
                assert image.flags.c_contiguous and image.shape == (100, 104, 3)
                assert np.array_equal(image, whole[top : top + 100, left : left + 104])

    def test_downscale_matches_antialiased_bilinear(self, video_factory, tmp_path) -> None:
        # swscale's packed rgb24 output is 0.8 grey levels off here (column artefacts of up
        # to 2.7); its planar output, which the decoder uses, is within 0.32 on average.
        path = video_factory(tmp_path / "t.mp4", n_frames=2, width=640, height=272,
                             pattern="texture")  # fmt: skip
        ours = next(iter_frames(path, size=112, crop=None)).image.astype(np.float32)
        with av.open(str(path)) as container:
            full = next(container.decode(video=0)).to_ndarray(format="rgb24")
        source = torch.from_numpy(full).permute(2, 0, 1)[None].float()
        ref = F.interpolate(source, size=(112, 264), mode="bilinear", antialias=True)
        error = np.abs(ours - ref[0].permute(1, 2, 0).numpy())
        assert ours.shape == (112, 264, 3)
        assert error.mean() < 0.5
        assert error.max() < 2.5

    @pytest.mark.parametrize("codec", ["h264", "mpeg4"])
    def test_odd_sizes(self, video_factory, tmp_path, codec) -> None:
        path = video_factory(tmp_path / "odd.mp4", width=65, height=49, n_frames=20, codec=codec)
        info = open_video(path)
        assert (info.width, info.height) == (65, 49)
        assert next(iter_frames(path, size=None, crop=None)).image.shape == (49, 65, 3)
        assert ids(path) == list(range(20))

    def test_sample_aspect_ratio(self, video_factory, tmp_path) -> None:
        path = video_factory(tmp_path / "sar.mp4", width=64, height=48, sar=Fraction(4, 3))
        info = open_video(path)
        assert (info.width, info.height) == (85, 48)  # displayed 16:9 like a player shows it
        assert next(iter_frames(path, crop=None)).image.shape == (112, 199, 3)

    @pytest.mark.parametrize(
        "kwargs",
        [{"size": 0}, {"crop": (1, 2, 3)}, {"crop": "112"}, {"threads": -1}, {"size": True}],
    )
    def test_invalid_arguments_raise_on_call(self, short_video, kwargs) -> None:
        with pytest.raises(ValueError):
            iter_frames(short_video, **kwargs)


class TestRotation:
    # rotation written = counterclockwise degrees of the display matrix, as FFmpeg's
    # av_display_rotation_get and PyAV's VideoFrame.rotation report it.
    @pytest.mark.parametrize(
        ("rotation", "corner", "reported"),
        [(0, "tl", 0), (90, "bl", 90), (-90, "tr", 270), (180, "br", 180)],
    )
    def test_upright(self, video_factory, tmp_path, rotation, corner, reported) -> None:
        path = video_factory(tmp_path / "r.mp4", rotation=rotation, pattern="marker", n_frames=5)
        info = open_video(path)
        assert info.rotation == reported
        swapped = rotation in (90, -90)
        assert (info.width, info.height) == ((48, 64) if swapped else (64, 48))
        frames = list(iter_frames(path, size=None, crop=None))
        assert frames[0].image.shape == ((64, 48, 3) if swapped else (48, 64, 3))
        assert {marker_corner(f.image) for f in frames} == {corner}
        assert [frame_id(f.image) for f in frames] == list(range(5))
        resized = next(iter_frames(path, crop=None)).image
        assert resized.shape == ((149, 112, 3) if swapped else (112, 149, 3))
        assert marker_corner(resized) == corner

    def test_phone_portrait_matrix(self, video_factory, tmp_path) -> None:
        """The tkhd matrix of a portrait phone video (old ``rotate=90`` tag).

        FFmpeg reports it as a rotation of -90 degrees and players turn the coded landscape
        frame 90 degrees clockwise, so the coded top-left corner ends up top-right.
        """
        matrix = [0, 1 << 16, 0, -(1 << 16), 0, 0, 0, 0, 1 << 30]
        path = video_factory(tmp_path / "phone.mp4", display_matrix=matrix, pattern="marker")
        with av.open(str(path)) as container:
            assert next(container.decode(video=0)).rotation == -90
        info = open_video(path)
        assert (info.width, info.height, info.rotation) == (48, 64, 270)
        image = next(iter_frames(path, size=None, crop=None)).image
        assert image.shape == (64, 48, 3)
        assert marker_corner(image) == "tr"


class TestStreaming:
    def test_memory_does_not_grow_with_length(self, video_factory, tmp_path) -> None:
        short = video_factory(tmp_path / "s.mp4", n_frames=20)
        long = video_factory(tmp_path / "l.mp4", n_frames=200)

        def peak(path: Path) -> int:
            gc.collect()
            tracemalloc.start()
            try:
                n_clips = sum(1 for _ in iter_clips(iter_frames(path), clip_len=16))
                return tracemalloc.get_traced_memory()[1], n_clips
            finally:
                tracemalloc.stop()

        peak_short, n_short = peak(short)
        peak_long, n_long = peak(long)
        assert (n_short, n_long) == (2, 13)
        one_clip = 16 * 112 * 112 * 3
        all_frames = 200 * 112 * 112 * 3
        # Holding all frames of the long video would need ~6.0 MB; a bounded pipeline stays
        # at a few clips' worth (one clip is ~0.6 MB), the same as for the short video.
        assert peak_long < all_frames / 2
        assert peak_long < peak_short + 2 * one_clip

    def test_generator_is_lazy(self, tmp_path) -> None:
        missing = tmp_path / "missing.mp4"
        frames = iter_frames(missing)  # nothing is opened before the first next()
        with pytest.raises(VideoDecodeError):
            next(frames)

    @pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc/self/fd")
    def test_early_close_releases_the_file(self, video_factory, tmp_path) -> None:
        path = video_factory(tmp_path / "v.mp4", n_frames=100)

        def open_handles() -> int:
            fd_dir = Path("/proc/self/fd")
            count = 0
            for fd in fd_dir.iterdir():
                with contextlib.suppress(OSError):
                    count += os.readlink(fd) == str(path)
            return count

        frames = iter_frames(path)
        next(frames)
        assert open_handles() == 1
        frames.close()
        assert open_handles() == 0

        for i, _ in enumerate(iter_frames(path)):  # an abandoned consumer
            if i == 3:
                break
        gc.collect()
        assert open_handles() == 0


def _cut_after_first_cluster(src: Path, dst: Path) -> Path:
    """Keep a Matroska file's headers but none of its frames."""
    data = src.read_bytes()
    at = data.index(b"\x1f\x43\xb6\x75")  # Cluster element id
    dst.write_bytes(data[: at + 4])
    return dst


class TestErrors:
    def reason(self, path: Path, *, threads: int = 0) -> str:
        with pytest.raises(VideoDecodeError) as excinfo:
            for _ in iter_frames(path, threads=threads):
                pass
        message = str(excinfo.value)
        assert "\n" not in message
        assert str(path) not in message  # the caller adds the path
        return message

    def test_missing(self, tmp_path) -> None:
        path = tmp_path / "nope.mp4"
        assert self.reason(path) == "no such file"
        with pytest.raises(VideoDecodeError, match="no such file"):
            open_video(path)

    def test_empty(self, tmp_path) -> None:
        path = write_empty(tmp_path / "empty.mp4")
        assert self.reason(path) == "empty file"
        with pytest.raises(VideoDecodeError, match="empty file"):
            open_video(path)

    def test_directory(self, tmp_path) -> None:
        assert "directory" in self.reason(tmp_path)

    def test_text_named_mp4(self, tmp_path) -> None:
        path = write_text(tmp_path / "notes.mp4")
        assert self.reason(path).startswith("not a video file")
        with pytest.raises(VideoDecodeError, match="not a video file"):
            open_video(path)

    def test_audio_only(self, tmp_path) -> None:
        path = write_audio_only(tmp_path / "sound.m4a")
        assert self.reason(path) == "no video stream (audio only)"
        with pytest.raises(VideoDecodeError, match="no video stream"):
            open_video(path)

    def test_permission_denied_is_mapped(self, short_video, monkeypatch) -> None:
        def deny(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(decode_mod.av, "open", deny)
        assert self.reason(short_video) == "permission denied"

    def test_permission_denied(self, video_factory) -> None:
        from tests.hostile import shared_folder, unprivileged

        with shared_folder() as root:  # root ignores file modes: decode as nobody
            video = video_factory(root / "locked.mp4", n_frames=4)
            video.chmod(0)
            with unprivileged():
                assert self.reason(video) == "permission denied"

    @pytest.mark.parametrize("fraction", [0.9, 0.5, 0.2])
    def test_truncated_mp4_index_at_end(self, video_factory, tmp_path, fraction) -> None:
        src = video_factory(tmp_path / "src.mp4", n_frames=100, width=96, height=64)
        path = truncate_copy(src, tmp_path / "cut.mp4", fraction=fraction)
        assert self.reason(path).startswith("truncated")
        with pytest.raises(VideoDecodeError, match=r"^truncated"):
            open_video(path)

    @pytest.mark.parametrize("codec", ["h264", "mpeg4"])
    @pytest.mark.parametrize("fraction", [0.999, 0.9, 0.5])
    @pytest.mark.parametrize("threads", [0, 1])
    def test_truncated_mp4_faststart(
        self, video_factory, tmp_path, codec, fraction, threads
    ) -> None:
        src = video_factory(
            tmp_path / "src.mp4", n_frames=100, width=96, height=64, codec=codec, faststart=True
        )
        path = truncate_copy(src, tmp_path / "cut.mp4", fraction=fraction)
        open_video(path)  # the header is intact
        # Usually the cut packet is flagged corrupt ("truncated or corrupt ..."); when the cut
        # lands on a packet boundary the duration check reports it ("truncated: decoded ...").
        assert self.reason(path, threads=threads).startswith("truncated")

    @pytest.mark.parametrize("fraction", [0.9, 0.5])
    def test_truncated_matroska(self, video_factory, tmp_path, fraction) -> None:
        src = video_factory(tmp_path / "src.mkv", n_frames=100, width=96, height=64)
        path = truncate_copy(src, tmp_path / "cut.mkv", fraction=fraction)
        assert self.reason(path).startswith("truncated: decoded")

    def test_truncated_header(self, video_factory, tmp_path) -> None:
        src = video_factory(tmp_path / "src.mkv", n_frames=100, width=96, height=64)
        path = truncate_copy(src, tmp_path / "cut.mkv", fraction=0.01)
        assert "truncated" in self.reason(path)

    def test_no_frames(self, video_factory, tmp_path) -> None:
        src = video_factory(tmp_path / "src.mkv", n_frames=10)
        path = _cut_after_first_cluster(src, tmp_path / "headers.mkv")
        assert self.reason(path).startswith("no frames decoded")
        with pytest.raises(VideoDecodeError, match="no frames decoded"):
            open_video(path)

    def test_corrupt_data_mid_stream(self, video_factory, tmp_path) -> None:
        src = video_factory(
            tmp_path / "src.mp4",
            n_frames=60,
            width=96,
            height=64,
            pattern="texture",
            faststart=True,
        )
        data = bytearray(src.read_bytes())
        middle = len(data) // 2
        data[middle : middle + 400] = np.random.default_rng(0).bytes(400)
        path = tmp_path / "garbled.mp4"
        path.write_bytes(bytes(data))
        for threads in (0, 1):
            warnings: list[str] = []
            kept = [f.index for f in iter_frames(path, threads=threads, warnings_out=warnings)]
            # The frames that decode are kept, in order; the damaged ones are reported.
            assert 0 < len(kept) < 60 and kept == sorted(kept)
            assert len(warnings) >= 1 and all("\n" not in w for w in warnings)
            assert warnings[0].startswith("decode errors: ")
            assert "packets could not be decoded" in warnings[0]

    def test_undamaged_video_has_no_warnings(self, short_video) -> None:
        warnings: list[str] = []
        assert len(list(iter_frames(short_video, warnings_out=warnings))) == 40
        assert warnings == []

    def test_damage_is_reported_when_closed_early(self, video_factory, tmp_path) -> None:
        src = video_factory(tmp_path / "src.mp4", n_frames=60, pattern="texture", gop=10)
        data = bytearray(src.read_bytes())
        data[len(data) // 5 : len(data) // 5 + 64] = bytes(64)
        path = tmp_path / "garbled.mp4"
        path.write_bytes(bytes(data))
        warnings: list[str] = []
        frames = iter_frames(path, threads=1, warnings_out=warnings)
        for frame in frames:
            if frame.index >= 50:
                break
        frames.close()
        assert any(w.startswith("decode errors: ") for w in warnings)

    def test_every_packet_damaged_fails(self, tmp_path) -> None:
        from tests.hostile import make_hostile_corpus

        cases = make_hostile_corpus(tmp_path / "corpus")
        assert self.reason(cases["garbage_packets"].path).startswith("no frames decoded")

    @pytest.mark.parametrize(("codec", "suffix"), [("png", ".mp4"), ("mjpeg", ".mkv")])
    def test_still_image_is_not_a_video(self, tmp_path, codec, suffix) -> None:
        from tests.hostile import _write_image

        pix_fmt = "rgb24" if codec == "png" else "yuvj420p"
        path = _write_image(tmp_path / f"picture{suffix}", codec, pix_fmt)
        assert self.reason(path) in {
            "not a video file (a still PNG image)",
            "not a video file (a still JPEG image)",
        }

    def test_unlistable_folder(self) -> None:
        from tests.hostile import shared_folder, unprivileged

        with shared_folder() as root:
            folder = root / "locked"
            folder.mkdir()
            folder.chmod(0)
            with unprivileged():
                reason = self.reason(folder)
        assert reason == "cannot list folder: permission denied"

    def test_shared_bad_files_fixture(self, bad_files) -> None:
        reasons = {name: self.reason(path) for name, path in bad_files.items()}
        assert reasons["empty"] == "empty file"
        assert reasons["text"].startswith("not a video file")
        assert reasons["audio_only"].startswith("no video stream")
        assert reasons["truncated"].startswith("truncated")
        assert reasons["truncated_faststart"].startswith("truncated or corrupt: demuxer")

    def test_complete_files_are_not_flagged(self, video_factory, tmp_path) -> None:
        for name, kwargs in {
            "a.mp4": {},
            "b.mp4": {"faststart": True},
            "c.mkv": {},
            "d.mp4": {"vfr": True},
            "e.mkv": {"vfr": True},
            "f.mp4": {"codec": "mpeg4", "fps": Fraction(30000, 1001)},
        }.items():
            path = video_factory(tmp_path / name, n_frames=50, **kwargs)
            assert ids(path) == list(range(50)), name


class TestOpenVideo:
    def test_mp4(self, short_video) -> None:
        info = open_video(short_video)
        assert info == VideoInfo(
            path=short_video,
            width=64,
            height=48,
            fps=25.0,
            n_frames_declared=40,
            duration=pytest.approx(1.6),
            rotation=0,
            codec="h264",
        )

    def test_matroska_declares_no_count(self, video_factory, tmp_path) -> None:
        path = video_factory(tmp_path / "v.mkv", n_frames=40)
        info = open_video(path)
        assert info.n_frames_declared is None
        assert info.duration == pytest.approx(1.6)

    def test_ntsc_rate(self, video_factory, tmp_path) -> None:
        path = video_factory(tmp_path / "v.mp4", fps=Fraction(30000, 1001), codec="mpeg4")
        assert open_video(path).fps == pytest.approx(30000 / 1001)

    def test_accepts_str(self, short_video) -> None:
        assert open_video(str(short_video)).path == short_video


class TestTimestamps:
    @pytest.mark.parametrize("codec", ["h264", "mpeg4"])
    def test_avi_times_follow_frame_count(self, video_factory, tmp_path, codec) -> None:
        """AVI stores no pts; FFmpeg's fabricated ones come out permuted with B-frames."""
        fps = Fraction(30000, 1001)
        path = video_factory(tmp_path / "v.avi", n_frames=21, fps=fps, codec=codec)
        frames = list(iter_frames(path))
        assert [frame_id(f.image) for f in frames] == list(range(21))
        assert [f.time for f in frames] == pytest.approx([i / fps for i in range(21)])
        assert all(f.duration == pytest.approx(1 / fps) for f in frames)

    def test_times_never_go_backwards(self) -> None:
        clock = decode_mod._Clock(time_base=Fraction(1, 10), start=0, fps=10, use_pts=True)
        times = [clock.time(i, pts) for i, pts in enumerate([0, 1, None, 5, 4, 6])]
        assert times == pytest.approx([0.0, 0.1, 0.2, 0.5, 0.6, 0.7])
