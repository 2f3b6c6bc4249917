"""tfalign: face alignment models from papers to phones (TensorFlow / tf_keras, TFLite, CoreML)."""
from setuptools import find_packages, setup

# Versions proven together on the target machine: ../shared/STACK.md. Move a pin only with a recorded reason.
STACK = [
    "tensorflow==2.21.0",
    "tf-keras==2.21.0",
    "tensorflow-model-optimization==0.8.1",
    "coremltools==9.0",
    "ai-edge-litert==2.3.0",
    "opencv-python-headless==5.0.0.93",
    "numpy==2.4.6",
    "scikit-learn==1.9.1",
    "tensorboard==2.21.0",                # tf.summary (training logs); TF 2.21 no longer pulls it in
]

setup(
    name="tfalign",
    version="0.1.0",
    description="Face alignment (facial landmarks) in Keras, from training to int8 TFLite / CoreML on phones",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["tfalign", "tfalign.*", "quantization", "quantization.*",
                                    "mobile_export", "mobile_export.*"]),
    include_package_data=True,
    package_data={"tfalign": ["weights/*", "weights/**/*", "data/*.json", "data/*.npy"],
                  "mobile_export": ["*.json", "devices/*", "profile/*.json"]},
    # h5py reads MATLAB v7.3 (HDF5) .mat files such as COFW's.
    install_requires=STACK + ["matplotlib>=3.8", "scipy>=1.11", "tqdm>=4.66", "jsonschema>=4.20", "pillow>=10",
                              "h5py>=3.10"],
    extras_require={"dev": ["pytest>=8", "hypothesis>=6.100", "pytest-timeout>=2.3",
                            # `make test` spreads test files over the cores (pytest -n)
                            "pytest-xdist>=3.5",
                            # syntax checks of the demo apps' Swift and Kotlin sources (no toolchains here)
                            "tree-sitter==0.26.1", "tree-sitter-swift==0.7.4", "tree-sitter-kotlin==1.1.0"]},
)
