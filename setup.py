"Installs modtrace from settings.ini (nbdev 2 layout; no pkg_resources, which setuptools here lacks)."
from configparser import ConfigParser
from pathlib import Path
import setuptools, shlex

here = Path(__file__).resolve().parent
cfg = ConfigParser(delimiters=['='])
cfg.read(here/'settings.ini', encoding='utf-8')
cfg = cfg['DEFAULT']

licenses = {'apache2': ('Apache Software License 2.0', 'OSI Approved :: Apache Software License')}
statuses = ['1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable', '6 - Mature', '7 - Inactive']
lic = licenses[cfg['license']]
reqs = shlex.split(cfg.get('requirements', ''))          # one value over several lines in settings.ini
dev_reqs = shlex.split(cfg.get('dev_requirements', ''))
scripts = [s.strip() for s in cfg.get('console_scripts', '').split() if s.strip()]

setuptools.setup(
    name=cfg['lib_name'], version=cfg['version'], description=cfg['description'],
    license=lic[0], author=cfg['author'], author_email=cfg['author_email'],
    keywords=cfg['keywords'].split(), url=cfg['git_url'],
    classifiers=['Development Status :: ' + statuses[int(cfg['status'])],
                 'Intended Audience :: ' + cfg['audience'].title(),
                 'License :: ' + lic[1], 'Natural Language :: ' + cfg['language'].title(),
                 'Programming Language :: Python :: 3', 'Programming Language :: Python :: ' + cfg['min_python']],
    packages=setuptools.find_packages(include=['modtrace', 'modtrace.*']),
    include_package_data=True, install_requires=reqs, extras_require={'dev': dev_reqs},
    python_requires='>=' + cfg['min_python'],
    long_description=(here/'README.md').read_text(encoding='utf-8'), long_description_content_type='text/markdown',
    zip_safe=False, entry_points={'console_scripts': scripts, 'nbdev': [f"{cfg['lib_name']}={cfg['lib_name']}._modidx:d"],
                                  'modtrace.tasks': ['demo = modtrace.demo']},   # task plug-ins (modtrace.data.get_task)
)
