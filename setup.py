from setuptools import find_packages, setup

with open("README.md", encoding="utf-8") as readme:
    long_description = readme.read()

setup(
    name="simplexmpp",
    version="0.1.0",
    description="A blocking XMPP client library for Python code that does not want asyncio",
    long_description=long_description,
    long_description_content_type="text/markdown",
    license="MIT",
    packages=find_packages(include=["simplexmpp", "simplexmpp.*"]),
    package_data={"simplexmpp": ["py.typed"]},
    python_requires=">=3.10",
    install_requires=[
        "defusedxml>=0.7",
        "idna>=3.4",
        "precis-i18n>=1.0",
        "requests>=2.28",
        "dnspython>=2.3",
        "tomli>=1.1; python_version < '3.11'",  # the config file; tomllib from 3.11 on
    ],
    extras_require={"test": ["pytest>=7", "hypothesis>=6"]},
    entry_points={"console_scripts": ["simplexmpp=simplexmpp.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Communications :: Chat",
        "Typing :: Typed",
    ],
)
