"""A source tree or label table -> a Catalog of images: walk, read blocks of files, label by layout."""
